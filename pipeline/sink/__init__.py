"""Pure functional core of the Shopify sink (no Kafka, no HTTP, no clock). See docs/sink.md."""
