"""Write one JSON Schema file per canonical model (`pssync contracts export DIR`)."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.v1 import MODELS, VERSION


def export_schemas(directory: Path) -> list[Path]:
    """Write `<Model>.schema.json` for every v1 model into `directory`; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in sorted(MODELS.items()):
        schema = model.model_json_schema()
        schema["$id"] = f"https://pssync.dev/schemas/{VERSION}/{name}.schema.json"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
