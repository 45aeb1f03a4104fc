"""Gifts that arrived: bank statements (ISO 20022 camt.053/054), Vipps reports and plain
CSV files read into `ArrivedGift`s (one module per input kind), stored once each and
attributed to the issue whose reference their giver typed (store.py), and summed up per
issue and month (tally.py). The use cases are in mailer.fundraising."""
