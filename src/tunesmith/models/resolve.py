"""``resolve(base_model)``: turn any base-model reference into something ``from_pretrained`` loads.

A reference is a local model folder or hub id (returned unchanged), a GGUF file (``*.gguf`` or
``gguf:PATH``) or a catalogue name (``smollm2-135m-instruct``). GGUF files are converted once into
``<cache>/gguf/<sha256 of the file>/`` (see ``gguf_import``); later calls find the finished folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tunesmith.errors import did_you_mean
from tunesmith.models import catalogue
from tunesmith.models.cache import cache_root, discard, sweep
from tunesmith.models.gguf_file import GGUFError, check, read_header
from tunesmith.models.gguf_import import INFO, ImportResult, convert, file_sha256

# (path, inode, size, mtime, ctime) -> sha256, so a file is hashed once per process; ctime and the inode change
# on every rewrite or replacement, also one that keeps the size and sets the old mtime again (cp -p, rsync -t)
_HASHES: dict[tuple[str, int, int, int, int], str] = {}


def gguf_source(ref: str) -> Path | None:
    """The GGUF file ``ref`` names (a path or a catalogue entry's installed file), or None for anything else."""
    if ref.startswith("gguf:"):
        return Path(ref[len("gguf:"):]).expanduser()
    if ref.lower().endswith(".gguf"):
        return Path(ref).expanduser()
    if Path(ref).exists():  # a local folder wins over a catalogue name
        return None
    entry = catalogue.get(ref)
    if entry is None and "/" not in ref and (hint := did_you_mean(ref, catalogue.entries(), cutoff=0.8)):
        # a misspelt catalogue name would otherwise be asked of the hub as a model id (offline: "couldn't connect")
        raise catalogue.CatalogueError(f"base_model '{ref}' is not a local folder, a GGUF file or a name in the "
                                       f"model catalogue{hint}")
    return catalogue.locate(entry) if entry is not None else None


def resolve(ref: str, say: Callable[[str], None] | None = None, root: Path | None = None) -> str:
    """A folder or hub id for ``ref``; GGUF files and catalogue names are converted (once) first."""
    source = gguf_source(ref)
    if source is None:
        return ref
    return str(ensure_converted(source, say=say, root=root, expected_sha256=_catalogue_sha(ref)).folder)


def ensure_converted(source: Path, *, say: Callable[[str], None] | None = None, root: Path | None = None,
                     expected_sha256: str | None = None) -> ImportResult:
    """The cached conversion of ``source``, converting it now when there is none."""
    if not source.is_file():
        raise GGUFError(f"{source}: no such GGUF file; check the path")
    # a damaged or foreign file is refused before it is hashed whole (also when a conversion of it is cached:
    # reading the header takes well under a second)
    check(read_header(source))
    sha = _sha256(source)
    if expected_sha256 and sha != expected_sha256:
        raise GGUFError(f"{source}: sha256 {sha[:12]}... differs from the catalogue's {expected_sha256[:12]}...; "
                        "the installed file is damaged or another build: reinstall its package")
    folder = (root or cache_root()) / "gguf" / sha[:16]
    sweep(folder.parent)  # leftovers of killed conversions
    damage = _damage(folder)
    if damage is None:
        return ImportResult.read(folder)
    if folder.exists():  # files deleted or cut short since (a cleaner, a full disk): never loaded as it is
        if say:
            say(f"the cached conversion {folder} is damaged ({damage}); converting {source.name} again")
        discard(folder)
    if say:
        say(f"converting {source.name} once into a Hugging Face folder: {folder}")
    result = convert(source, folder, say=say or (lambda line: None), sha256=sha)
    if say:
        say(f"converted in {result.seconds:.0f} s; verified: max |logit diff| {result.max_abs_diff:.2e} "
            f"on {result.prompts} prompts (tolerance {result.tolerance:g})")
    return result


def portable_ref(ref: str) -> str:
    """``ref`` as recorded in a saved model's info: local paths made absolute (so the base is found from
    any working directory), catalogue names and hub ids unchanged."""
    if ref.startswith("gguf:"):
        return "gguf:" + str(Path(ref[len("gguf:"):]).expanduser().resolve())
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def _sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _HASHES:
        _HASHES[key] = file_sha256(path)
    return _HASHES[key]


# what a conversion whose info file lists no files (tunesmith before it recorded them) must hold
_ESSENTIAL = ("config.json", "tokenizer.json")


def _damage(folder: Path) -> str | None:
    """None when ``folder`` holds a complete conversion: its info file, and every file the info lists at the
    size it had (else the essential files); otherwise what is wrong."""
    import json

    try:
        info = json.loads((folder / INFO).read_text("utf-8"))
    except FileNotFoundError:
        return f"no {INFO}"
    except (OSError, ValueError):
        return f"{INFO} is unreadable"
    files = info.get("files") or {name: None for name in _ESSENTIAL}
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if size is not None and path.stat().st_size != size:
            return f"{name} has {path.stat().st_size:,} bytes, not {size:,}"
    if not any(folder.glob("model*.safetensors")):
        return "its safetensors weights are missing"
    return None


def _catalogue_sha(ref: str) -> str | None:
    entry = catalogue.get(ref)
    return entry.sha256 if entry is not None and not Path(ref).exists() else None
