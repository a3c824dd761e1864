"""The model registry, one module per concern behind the `registry.Registry` façade:

- `registry`: the façade, one transaction per call; `database`, its base class: the engine,
  read and write transactions, the store's head check, and the one place the database's
  failures become a `StoreError`.
- `versions`: what a version is (`VersionDraft`, `ModelVersion`, whose fields declare the
  `versions` columns), allocation, insertion, the digest its build event keeps.
- `queries`: finding versions by reference, metric, tag, alias or status.
- `aliases`: promote, rollback, alias removal and their history.
- `status`: retire, revive, pin; `facts`: what retention looks at.
- `lineage`: upstream inputs, downstream versions, reproductions.
- `audit`: the hash-chained log and the `Write` transaction that appends to it;
  `verify` and `replay`: `audit --verify`; `head`: the store's record of its registry.
- `transfer`: `registry copy` (every row, ids kept, into an empty database) and `registry info`.
- `backends`: the engine from a URL; `sqlite` and `postgres`: what only that backend needs.
- `tables`: the schema and its migrations; `crosscheck`, `versiondiff`: comparisons.
"""
