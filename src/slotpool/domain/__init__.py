"""Pure rules of slotpool: no I/O, no clock, no framework. Everything here is tested as tables."""
