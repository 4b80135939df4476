"""The Shopify sink: a pure core (``core``, ``steps`` and the modules they use: no Kafka, no HTTP,
no clock) and its shell, ``service`` (``tally sink``). See docs/sink.md."""
