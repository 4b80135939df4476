"""Infrastructure the pipeline runs on: a local Kafka broker, Shopify's published schema."""
