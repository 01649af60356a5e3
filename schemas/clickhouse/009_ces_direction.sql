-- Which way a CES answer's scale runs, as the event declared it (issue 16): survey.ces_higher_means
-- ('less_effort': a higher answer means less effort, CES 2.0; 'more_effort': the original CES
-- wording). NULL when the event did not say (then ces_scale 7 means less_effort and ces_scale 5
-- the deployment's PEAKEND_CES_5_HIGHER_MEANS). `ces` stays the answer as given; the metrics
-- and journeys carry it on 1-7, higher = easier, already reversed where it ran the other way.
-- The `-- unless_column:` line makes the ALTER run only while it is still needed
-- (pipeline/storage/migrate.py).

-- unless_column: touchpoint_events.ces_higher_means
ALTER TABLE touchpoint_events ADD COLUMN ces_higher_means Nullable(String) COMMENT 'survey.ces_higher_means: less_effort, more_effort, or NULL when the event did not declare it' AFTER ces_scale;
