"""Render the host files under scripts/ (Jinja2 templates, strict: a missing variable is an error; `paths` is
always there: components/paths.py)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jinja2

from components.paths import HOST

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(SCRIPTS)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)
_env.globals["paths"] = HOST  # every template spells host paths through components/paths.py


def render(template: str, **variables: Any) -> str:
    """Render `scripts/<template>` with `variables`."""
    return _env.get_template(template).render(**variables)


def script(path: str) -> str:
    """Return a non-templated file under scripts/ as it is."""
    return (SCRIPTS / path).read_text()


def content_hash(*parts: str) -> str:
    """A short, stable hash of rendered content, used as a Pulumi trigger."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]
