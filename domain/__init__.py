"""Pure domain of Orders and Payments: commands, events, state, decide and evolve. No I/O."""
