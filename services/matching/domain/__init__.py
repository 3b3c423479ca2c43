"""Pure matching logic: configuration, topic names, scoring and explanations. No I/O here."""
