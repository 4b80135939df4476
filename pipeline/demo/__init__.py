"""``tally demo``: the whole system on one machine, with synthetic traffic and a summary."""
