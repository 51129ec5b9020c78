-- 0007: how each stored row was delivered. Placeholders as in 0001.
--
-- One event can reach the store by several paths: a diagnostic setting to
-- Event Hubs, another to Log Analytics, a storage archive read by
-- backfill. Each delivery stays a row of its own chain (it is evidence of
-- what that path carried); the canned queries collapse the rows of one
-- event_id and list the paths (queries/README.md, "One event, several
-- deliveries"). delivery names the path from the chain, which is the
-- ingest stream: "eventhubs/<namespace>/<hub>/<group>/<partition>",
-- "loganalytics/<workspace>/<table>", "archive/<account>/<container>/<blob>"
-- and "file/<path>" (custody backfill, custody append). Chains named
-- otherwise (tests, imports) fall back to the source_kind they were
-- stored with.
--
-- An ALIAS column: computed when read, never stored, so it costs no disk,
-- takes no part in the event hash (event-v1.md) and is not in SELECT *.
-- On a cluster the Distributed table gets it too.
ALTER TABLE ${db}.events${local} ${on_cluster} ADD COLUMN IF NOT EXISTS delivery String ALIAS
    multiIf(startsWith(chain, 'eventhubs/'), 'eventhubs',
        startsWith(chain, 'loganalytics/'), 'loganalytics',
        startsWith(chain, 'archive/') OR startsWith(chain, 'file/'), 'archive',
        source_kind IN ('eventhubs', 'loganalytics'), toString(source_kind),
        'archive');

ALTER TABLE ${db}.events ${on_cluster} ADD COLUMN IF NOT EXISTS delivery String ALIAS
    multiIf(startsWith(chain, 'eventhubs/'), 'eventhubs',
        startsWith(chain, 'loganalytics/'), 'loganalytics',
        startsWith(chain, 'archive/') OR startsWith(chain, 'file/'), 'archive',
        source_kind IN ('eventhubs', 'loganalytics'), toString(source_kind),
        'archive');
