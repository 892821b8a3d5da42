// The Entra ID application that stands for the Payments HTTP API, and its service principal.
// It is the audience of the tokens Orders sends with PUT /api/payments/{id}: Orders' managed
// identity asks for "<appId>/.default" and Entra ID issues an app-only access token whose `aud`
// is the appId and whose `oid` is the Orders identity's principal id. The Payments function
// checks both (app/adapters/entra_auth.py). The application has no secret, certificate or
// redirect URI: nobody signs in as it; it only names the API.
//
// This file sits outside infra/bicep on purpose: it uses the Microsoft Graph Bicep extension
// (`extension microsoftGraphV1`, resolved through infra/bicepconfig.json), which the
// pycep-parser pinned by checkov cannot parse; checkov has no checks for Microsoft.Graph types.
// tests/infra parses it with the newer pycep-parser of the dev environment.
//
// Deploying it needs Microsoft Graph rights of the deploying user: Application.ReadWrite.All
// (for example the Entra role Application Developer, Cloud Application Administrator or
// Application Administrator); see docs/deploy.md.

extension microsoftGraphV1

@description('Unique name of the application in the tenant (an immutable key chosen by the template, so that redeployments update the same application).')
@minLength(1)
@maxLength(120)
param uniqueName string

@description('Display name of the application.')
param displayName string

resource application 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  api: {
    // v2 tokens: issuer https://login.microsoftonline.com/<tenant>/v2.0, aud = appId.
    requestedAccessTokenVersion: 2
  }
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: application.appId
}

@description('Application (client) id: the token audience, PAYMENTS_API_AUDIENCE on both apps.')
output appId string = application.appId
output servicePrincipalId string = servicePrincipal.id
