"""Typer options derived from the settings model (sidecar.config), so an option is
written once: its field gives the flag, the environment variable, the type, the default
shown by --help and the help text.

`with_settings(Model)` wraps a command whose first parameter is `settings: Model`: the
wrapper's signature (what typer reads) is the command's own parameters plus one option
per field of the model. Only flags given on the command line are passed on; pydantic-
settings fills the rest from `SIDECAR_*` or the field's default, so a flag wins over the
environment and the model is the one place that reads either. (Click is told the
variable's name only to show it in --help, and to reject a malformed value early.)
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import typer
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from sidecar.config import env_of, flag_of
from sidecar.errors import StartupError

S = TypeVar("S", bound=BaseSettings)
R = TypeVar("R")


class SettingsError(StartupError):
    """Settings that do not validate; the message names each by its flag."""


def load_settings(model: type[S], flags: dict[str, Any] | None = None) -> S:
    """The settings from `flags` (field name -> value given on the command line), the
    environment and the defaults; raises SettingsError with one line per problem."""
    flags = flags or {}
    try:
        return model(**flags)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc, flags)) from None


def describe_errors(exc: ValidationError, flags: dict[str, Any]) -> str:
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        field = str(err["loc"][0]) if err["loc"] else None
        if field is None:  # a combination: the message names the settings itself
            lines.append(err["msg"])
            continue
        where = flag_of(field)
        if field not in flags and os.environ.get(env_of(field)) is not None:
            where += f" (from {env_of(field)})"
        lines.append(f"{where}: {err['msg']}")
    return "\n".join(lines)


def cli_fields(model: type[BaseSettings]) -> dict[str, FieldInfo]:
    return {n: f for n, f in model.model_fields.items() if _extra(f).get("cli", True)}


def with_settings(
    model: type[S],
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    def decorate(command: Callable[..., R]) -> Callable[..., R]:
        own = list(inspect.signature(command, eval_str=True).parameters.values())
        if not own or own[0].name != "settings":
            raise TypeError(f"{command.__name__}: the first parameter must be `settings`")
        own = own[1:]
        fields = cli_fields(model)
        clash = {p.name for p in own} & set(fields)
        if clash:
            raise TypeError(f"{command.__name__}: {sorted(clash)} are settings already")
        derived = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[_cli_type(f), _option(model, name, f)],
                default=_cli_default(f),
            )
            for name, f in sorted(fields.items(), key=lambda nf: _rank(model, nf[0]))
        ]
        ctx_param = inspect.Parameter(
            "_settings_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context
        )

        @functools.wraps(command)
        def wrapper(_settings_ctx: typer.Context, **kwargs: Any) -> R:
            flags = {
                n: v
                for n in fields
                if (v := kwargs.pop(n, None)) is not None and _given(_settings_ctx, n)
            }
            try:
                settings = load_settings(model, flags)
            except StartupError as exc:
                typer.echo("\n".join(f"error: {line}" for line in str(exc).splitlines()), err=True)
                raise typer.Exit(2) from None
            return command(settings, **kwargs)

        params = [ctx_param, *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own)]
        params += derived
        del wrapper.__wrapped__  # typer must read the signature below, not the command's
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def _given(ctx: typer.Context, name: str) -> bool:
    # By name: typer >= 0.22 vendors click, whose ParameterSource is then private.
    source = ctx.get_parameter_source(name)
    return getattr(source, "name", None) == "COMMANDLINE"


def _extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _plain(annotation: Any) -> Any:
    """`X | None` -> X."""
    if get_origin(annotation) in (Union, type(int | None)):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _cli_type(field: FieldInfo) -> Any:
    if _extra(field).get("octal") or _extra(field).get("comma_list"):
        return str | None
    base = _plain(field.annotation)
    if base is SecretStr:
        raise TypeError("a secret is never a flag: give it cli=False")
    return base | None


def _option(model: type[BaseSettings], name: str, field: FieldInfo) -> Any:
    extra = _extra(field)
    decls: tuple[str, ...]
    if "flag" in extra:
        decls = (extra["flag"],)
    elif _plain(field.annotation) is bool:
        decls = (f"{flag_of(name)}/--no-{flag_of(name)[2:]}",)
    else:
        decls = (flag_of(name),)
    show = _extra(field).get("show")
    return typer.Option(
        *decls,
        help=field.description,
        envvar=env_of(name),
        show_envvar=True,
        show_default=True if show is None else str(show),
        rich_help_panel=_panel(model, name),
    )


def _cli_default(field: FieldInfo) -> Any:
    """The default as click shows it (the model applies the real one)."""
    default = field.get_default(call_default_factory=True)
    if _extra(field).get("octal") and isinstance(default, int):
        return f"{default:04o}"
    if _extra(field).get("comma_list") and isinstance(default, tuple):
        return ",".join(map(str, default))
    if isinstance(default, float) and default.is_integer():
        return int(default)
    return default


def _owner(model: type[BaseSettings], name: str) -> tuple[int, type]:
    """The class of `model`'s MRO that declares the field (and its position)."""
    for i, cls in enumerate(reversed(model.__mro__)):
        if name in vars(cls).get("__annotations__", {}):
            return len(model.__mro__) - 1 - i, cls
    return 0, model


def _rank(model: type[BaseSettings], name: str) -> int:
    # Groups in the order the settings class lists its bases (Socket first for run).
    return _owner(model, name)[0]


def _panel(model: type[BaseSettings], name: str) -> str:
    return str(getattr(_owner(model, name)[1], "panel", "Options"))
