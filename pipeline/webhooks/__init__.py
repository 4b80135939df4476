"""``tally webhooks``: Shopify webhook intake (HMAC, dedupe, translate, publish to Kafka)."""
