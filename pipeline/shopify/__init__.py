"""The one adapter for Shopify's Admin GraphQL API, used by the sink, reconciliation and catalog
sync: shops and their tokens (``shops``), the HTTP client (``client``), the cost budget
(``budget``), backoff (``backoff``), and the levels query, its parser and a paced level reader
(``levels``). ``budget``, ``backoff`` and the query/parser functions are pure; ``client`` and
``levels.read_levels`` do I/O."""
