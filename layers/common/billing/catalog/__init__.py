"""The catalog: prices and products, projected from price.* and product.*
webhooks (billing.webhooks.objects, with the columns of columns.py) and
listed for pricing pages (queries.py)."""
