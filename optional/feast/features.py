"""Feature definitions of the Optional layer: the patient entity and the view over its 30
measurements, read by `feast apply` (and by `invoke optional --on`, which applies the same objects).

The offline source lives in the directory named by ONECOMMIT_FEAST_DATA (the state dir locally,
a volume on clusters), written from the data set the platform trains on, never committed.
"""

from __future__ import annotations

import os
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

from onecommit.features import dataset

_DATA = os.environ.get("ONECOMMIT_FEAST_DATA")
if not _DATA:
    raise RuntimeError("ONECOMMIT_FEAST_DATA is not set: run `invoke optional --on`, or export it "
                       "as the directory holding the offline file before calling feast")

patient = Entity(name="patient", join_keys=[dataset.ENTITY], value_type=ValueType.INT64,
                 description="One row of the demo data set, by its row number")

measurements_source = FileSource(
    name="patient_measurements_file",
    path=str(Path(_DATA) / dataset.OFFLINE_FILE),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

patient_measurements = FeatureView(
    name=dataset.FEATURE_VIEW,
    entities=[patient],
    schema=[Field(name=dataset.ENTITY, dtype=Int64),
            *(Field(name=name, dtype=Float64) for name in dataset.feature_names())],
    source=measurements_source,
    online=True,
    description="The 30 measurements the model takes as input X, in the model's column order",
)

patient_vector = FeatureService(name=dataset.FEATURE_SERVICE, features=[patient_measurements])
