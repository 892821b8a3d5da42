"""Money: ISO-4217 currency codes; amounts are ints in minor units (cents), never floats."""

from __future__ import annotations

from .errors import InvalidCommand

# Cosmos DB and JavaScript clients hold JSON numbers as IEEE doubles: past 2**53 - 1 integers
# silently lose precision, so no amount (or cart total) may grow beyond it.
MAX_AMOUNT = 2**53 - 1

# Active alphabetic codes of ISO 4217 list one, including fund codes (BOV, CHE, ...) and the
# supranational currencies (XAF, XCD, XCG, XOF, XPF, XDR, XSU, XUA). Left out on purpose: precious
# metals (XAU, XAG, XPD, XPT), bond-market units (XBA..XBD), XTS (testing) and XXX (no currency),
# since nothing can be priced in them, and withdrawn codes (HRK, SLL, ZWL, ANG; replaced by EUR,
# SLE, ZWG, XCG). Review when ISO publishes an amendment (e.g. BGN once Bulgaria's euro
# changeover completes).
# fmt: off
ISO_4217_CURRENCIES: frozenset[str] = frozenset({
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN",
    "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN",
    "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK",
    "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR",
    "FJD", "FKP",
    "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD",
    "HKD", "HNL", "HTG", "HUF",
    "IDR", "ILS", "INR", "IQD", "IRR", "ISK",
    "JMD", "JOD", "JPY",
    "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT",
    "LAK", "LBP", "LKR", "LRD", "LSL", "LYD",
    "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV",
    "MYR", "MZN",
    "NAD", "NGN", "NIO", "NOK", "NPR", "NZD",
    "OMR",
    "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG",
    "QAR",
    "RON", "RSD", "RUB", "RWF",
    "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC",
    "SYP", "SZL",
    "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
    "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS",
    "VED", "VES", "VND", "VUV",
    "WST",
    "XAF", "XCD", "XCG", "XDR", "XOF", "XPF", "XSU", "XUA",
    "YER",
    "ZAR", "ZMW", "ZWG",
})
# fmt: on


def validate_currency(code: str) -> str:
    """Return the code if it is an active ISO-4217 currency, else raise InvalidCommand."""
    # Commands come from JSON: the annotation is a promise the caller may not have kept.
    if isinstance(code, str) and code in ISO_4217_CURRENCIES:
        return code
    expected = 'expected a 3-letter ISO-4217 currency code such as "EUR"'
    # Case is not folded silently: the code is stored in events verbatim, so be exact.
    if isinstance(code, str) and code.upper() in ISO_4217_CURRENCIES:
        expected += f' (codes are upper case: "{code.upper()}")'
    raise InvalidCommand(f"currency {code!r} is not supported: {expected}", "currency")
