"""Configuration as code and bulk changes: the town's hotlines, agents and memberships as
one reviewable file (`hotline config export` / `apply`), agents from CSV or JSON
(`hotline agent import`) and PINs from a CSV on stdin (`hotline agent set-pin --stdin`).

The pydantic models below are the file's schema (`hotline config schema` prints it as JSON
Schema). Every value is checked by the validators the CLI's create and update commands use
(services/admin, domain/values), called from the models, so a file is refused with the
same words as the command line, plus the file, line and field. Applying then goes through
the same admin functions as the CLI, so their rules (a device belongs to one agent, no
unbinding a device someone is logged in on, no deleting a hotline with voicemails) hold
here too. Each change gets one audit row, written here; the caller owns the transaction.

A key left out of the file is not managed by it: a hotline without `holidays` keeps its
holidays, a file without `agents` leaves every agent alone. What the file lists, it sets.
Nothing absent from the file is deleted unless `prune` is asked for.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ari_app.db.models import Agent, AgentTarget, Holiday, Hotline, Membership
from ari_app.domain import values
from ari_app.domain.enums import TargetKind
from ari_app.domain.errors import HotlineError, InvalidValue
from ari_app.domain.pin import PIN_MIN_LENGTH
from ari_app.domain.sounds import language as language_code
from ari_app.services import admin, audit

SCHEMA_VERSION: Literal[1] = 1
Loc = tuple[str | int, ...]

# --- reading files with line numbers ---------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML without implicit numbers and dates: `+4930123456` or `0301234` stay text (as
    numbers they would lose the '+' or be read as octal); pydantic turns "20" into 20
    where the schema wants a number."""


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag
        not in (
            "tag:yaml.org,2002:int",
            "tag:yaml.org,2002:float",
            "tag:yaml.org,2002:timestamp",
        )
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Source:
    """A parsed file's name and the line where each part starts (key path -> line), so an
    error can say `town.yaml:12: hotlines[0].max_wait_s: ...`."""

    name: str
    lines: dict[Loc, int] = field(default_factory=dict)
    rows: bool = False  # a CSV/JSON list of agents: the field name alone says enough

    def line(self, loc: Loc) -> int | None:
        for end in range(len(loc), -1, -1):
            found = self.lines.get(loc[:end])
            if found is not None:
                return found
        return None

    def where(self, loc: Loc) -> str:
        line = self.line(loc)
        return self.name if line is None else f"{self.name}:{line}"

    def label(self, loc: Loc) -> str:
        parts = list(loc[1:] if self.rows and loc and isinstance(loc[0], int) else loc)
        text = ""
        for part in parts:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text

    def error(self, loc: Loc, message: str, cls: type[HotlineError] = InvalidValue) -> HotlineError:
        label = self.label(loc)
        return cls(f"{self.where(loc)}: {label + ': ' if label else ''}{message}")

    def invalid(self, exc: ValidationError) -> HotlineError:
        # The first in the file, not in the schema's field order.
        errors = sorted(exc.errors(), key=lambda e: self.line(tuple(e["loc"])) or 0)
        first = errors[0]
        context = first.get("ctx") or {}
        message = str(context["error"]) if "error" in context else first["msg"]
        if first["type"] == "model_type":
            message = "expected a mapping of keys to values here"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return self.error(tuple(first["loc"]), message + more)


def _walk(node: yaml.Node, path: Loc, source: Source) -> None:
    source.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            source.lines[(*path, name)] = key.start_mark.line + 1
            if name in seen:  # YAML would silently keep the last one
                raise source.error((*path, name), "given twice")
            seen.add(name)
            _walk(value, (*path, name), source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), source)


def load_document(text: str, name: str, *, rows: bool = False) -> tuple[Any, Source]:
    """YAML (or JSON, which this reads too) -> plain data and where each part is."""
    source = Source(name, rows=rows)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, source
        _walk(node, (), source)
        return loader.construct_document(node), source
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise InvalidValue(f"{where}: not valid YAML/JSON: {exc.problem or exc}") from None
    finally:
        loader.dispose()


# --- the schema -------------------------------------------------------------------------


def _domain(check: Any) -> Any:
    """A domain validator as pydantic wants it: InvalidValue becomes ValueError."""

    def run(value: Any) -> Any:
        try:
            return check(value)
        except InvalidValue as exc:
            raise ValueError(exc.message) from None

    return run


def _duration(value: Any) -> Any:
    if isinstance(value, str) and not value.strip().isdigit():
        return values.duration(value)  # "5m", "1h30m"; a bare number is seconds
    return value


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


def _column_default(name: str) -> Any:
    """The database model's default: one place for it, shown in the JSON Schema too."""
    default = Hotline.__table__.c[name].default
    arg = getattr(default, "arg", None)
    return arg.value if isinstance(arg, Enum) else arg


HotlineNumber = Annotated[str, AfterValidator(_domain(values.hotline_number))]
AgentNumber = Annotated[str, AfterValidator(_domain(values.agent_number))]
AgentName = Annotated[str, AfterValidator(_domain(admin.check_agent_name))]
DialString = Annotated[str, AfterValidator(_domain(values.dial_string))]
Phone = Annotated[str, AfterValidator(_domain(values.phone_number))]
Day = Annotated[date, BeforeValidator(_domain(lambda v: values.parse_date(str(v))))]
Seconds = Annotated[int, BeforeValidator(_domain(_duration))]
Language = Annotated[str, AfterValidator(_domain(language_code))]


class _Model(BaseModel):
    # Unknown keys are typos; numbers where text is meant (hotline: 500 in JSON) are text.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class HotlineConfig(_Model):
    """One hotline. Durations are seconds or text like `30s`, `5m`, `1h30m`."""

    number: HotlineNumber
    name: str
    strategy: str = _column_default("strategy")
    ring_timeout_s: Seconds = _column_default("ring_timeout_s")
    retry_delay_s: Seconds = _column_default("retry_delay_s")
    wrapup_s: Seconds = _column_default("wrapup_s")
    max_wait_s: Seconds = _column_default("max_wait_s")
    max_queue_len: int = _column_default("max_queue_len")
    no_answer_limit: int = _column_default("no_answer_limit")
    greeting_sound: str | None = None
    announce_frequency_s: Seconds = _column_default("announce_frequency_s")
    moh_class: str = _column_default("moh_class")
    timezone: str = _column_default("timezone")
    opening_hours: str | None = None
    closed_action: str = _column_default("closed_action")
    no_agent_action: str = _column_default("no_agent_action")
    timeout_action: str = _column_default("timeout_action")
    voicemail_greeting: str | None = None
    voicemail_max_s: Seconds = _column_default("voicemail_max_s")
    voicemail_quota: int = _column_default("voicemail_quota")
    caller_id_to_agent: str = _column_default("caller_id_to_agent")
    accept_confirm: bool = _column_default("accept_confirm")
    min_agents: int = _column_default("min_agents")
    escalation_numbers: list[Phone] = []
    service_level_s: Seconds = _column_default("service_level_s")
    vm_notify: list[str] = []  # e-mail addresses told of each new voicemail
    vm_notify_attach: bool = _column_default("vm_notify_attach")
    vm_notify_caller: bool = _column_default("vm_notify_caller")
    language: str | None = None  # what callers hear; none: the server's HOTLINE_LANGUAGE
    callback_after_s: Seconds = _column_default("callback_after_s")  # 0: no callback offer
    callback_attempts: int = _column_default("callback_attempts")
    callback_interval_s: Seconds = _column_default("callback_interval_s")
    holidays: list[Day] = []
    members: list[AgentNumber] = []  # agent numbers in ring order

    # Every admin setting must be a field here (tests/unit/test_config_schema.py says so
    # when one is added); a field named here that the model lacks would fail at import.
    @field_validator(*sorted(admin.HOTLINE_SETTINGS - {"number"}), check_fields=False)
    @classmethod
    def _admin_rule(cls, value: Any, info: ValidationInfo) -> Any:
        """The rule of `hotline line create/update` for this setting, word for word."""
        name = info.field_name
        assert name is not None
        return _domain(lambda v: admin.check_hotline_settings({name: v})[name])(value)

    def settings(self) -> dict[str, Any]:
        """The settings the file gives (number, holidays and members aside)."""
        given = self.model_fields_set & admin.HOTLINE_SETTINGS - {"number"}
        return {name: getattr(self, name) for name in sorted(given)}


class AgentConfig(_Model):
    """One agent; never a PIN (set PINs with `hotline agent set-pin`)."""

    number: AgentNumber
    name: AgentName
    device: DialString | None = None
    external_numbers: list[Phone] = []
    language: Language | None = None  # what the agent hears; none: HOTLINE_LANGUAGE


class AgentRow(AgentConfig):
    """One agent of a bulk import: the hotlines the agent answers (added, never removed)."""

    hotlines: list[HotlineNumber] = []


class TownConfig(_Model):
    """The whole configuration file."""

    version: Annotated[Literal[1], BeforeValidator(_number)] = SCHEMA_VERSION
    hotlines: list[HotlineConfig] = []
    agents: list[AgentConfig] = []


def json_schema() -> dict[str, Any]:
    return TownConfig.model_json_schema()


def _unique(source: Source, numbers: Sequence[str], what: str, *prefix: str | int) -> None:
    seen: set[str] = set()
    for index, number in enumerate(numbers):
        if number in seen:
            raise source.error((*prefix, index), f"{what} {number} is listed twice")
        seen.add(number)


def parse_config(text: str, name: str) -> tuple[TownConfig, Source]:
    """Parse and validate a configuration file; errors name the file, line and field."""
    data, source = load_document(text, name)
    try:
        config = TownConfig.model_validate({} if data is None else data)
    except ValidationError as exc:
        raise source.invalid(exc) from None
    _unique(source, [h.number for h in config.hotlines], "hotline", "hotlines")
    _unique(source, [a.number for a in config.agents], "agent", "agents")
    for index, hotline in enumerate(config.hotlines):
        _unique(source, hotline.members, "member", "hotlines", index, "members")
    return config, source


_LIST_SEPARATOR = ";"
AGENT_COLUMNS = ("number", "name", "device", "external_numbers", "hotlines")
_READ_ONLY = ("pin_set", "logged_in", "presence", "pin_locks")  # `agent list --json` only


def parse_agents(text: str, name: str, fmt: str) -> tuple[list[AgentRow], Source]:
    """Agents from CSV (columns as AGENT_COLUMNS; lists separated by ';') or JSON (a list
    of objects, e.g. `hotline agent list --json`). A column or key left out is not
    changed; an empty cell means none (no device, no external numbers)."""
    if fmt == "csv":
        source = Source(name, rows=True)
        reader = csv.DictReader(io.StringIO(text))
        unknown = set(reader.fieldnames or ()) - set(AGENT_COLUMNS)
        if unknown:
            raise InvalidValue(
                f"{name}:1: unknown column(s) {', '.join(sorted(unknown))}"
                f" (columns: {', '.join(AGENT_COLUMNS)})"
            )
        data: list[Any] = []
        for row in reader:
            if not any((v or "").strip() for v in row.values()):
                continue  # blank lines are not agents
            source.lines[(len(data),)] = reader.line_num
            if None in row:
                raise source.error((len(data),), "more cells than columns")
            item: dict[str, Any] = {}
            for key, cell in row.items():
                cell = (cell or "").strip()
                if key in ("external_numbers", "hotlines"):
                    item[key] = [p.strip() for p in cell.split(_LIST_SEPARATOR) if p.strip()]
                elif key == "device":
                    item[key] = cell or None
                else:
                    item[key] = cell
            data.append(item)
    else:
        loaded, source = load_document(text, name, rows=True)
        if not isinstance(loaded, list):
            raise InvalidValue(f"{name}: expected a list of agents")
        data = [
            {k: v for k, v in item.items() if k not in _READ_ONLY}
            if isinstance(item, dict)
            else item
            for item in loaded
        ]
    try:
        agents = TypeAdapter(list[AgentRow]).validate_python(data)
    except ValidationError as exc:
        raise source.invalid(exc) from None
    _unique(source, [a.number for a in agents], "agent")
    return agents, source


def parse_pins(text: str, name: str) -> list[tuple[int, str, str]]:
    """`number,PIN` rows (a header row `number,pin` may come first) -> (line, number, PIN).
    Errors never repeat a PIN."""
    rows: list[tuple[int, str, str]] = []
    reader = csv.reader(io.StringIO(text))
    for cells in reader:
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if not rows and [c.lower() for c in cells] == ["number", "pin"]:
            continue
        if len(cells) != 2:
            raise InvalidValue(f"{name}:{reader.line_num}: expected two cells: number,PIN")
        try:
            number = values.agent_number(cells[0])
        except InvalidValue as exc:
            raise InvalidValue(f"{name}:{reader.line_num}: {exc.message}") from None
        rows.append((reader.line_num, number, cells[1]))
    if not rows:
        raise InvalidValue(f"{name}: no number,PIN rows")
    return rows


@asynccontextmanager
async def _located(source: Source, loc: Loc) -> AsyncIterator[None]:
    """Errors of the admin rules (conflict, refused, not found), located in the file."""
    try:
        yield
    except HotlineError as exc:
        raise source.error(loc, exc.message, type(exc)) from None


# --- the plan ---------------------------------------------------------------------------

Op = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class Change:
    """One change, as planned and as audited. `fields`: name -> (old, new); lists and
    dates as plain JSON values."""

    op: Op
    kind: Literal["hotline", "agent", "member", "member order"]
    key: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def action(self) -> str:
        verb = {"create": "add", "delete": "remove"}.get(self.op, self.op)
        if self.kind == "member":
            return f"member_{verb}"
        if self.kind == "member order":
            return "member_reorder"
        return f"{self.kind}_{self.op}"


@dataclass(frozen=True)
class Result:
    changes: list[Change]
    kept: list[str]  # what the file leaves out and --prune would delete

    def count(self, op: Op) -> int:
        return sum(1 for c in self.changes if c.op == op)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return items if isinstance(value, list | tuple) else sorted(items)
    return value


# --- applying ---------------------------------------------------------------------------


class _Sync:
    """One apply or import in the caller's transaction: reads the state once, changes it
    through services/admin, and writes one audit row per change."""

    def __init__(self, session: AsyncSession, source: Source, actor: str, via: str) -> None:
        self.session = session
        self.source = source
        self.actor = actor
        self.via = via
        self.changes: list[Change] = []
        self.hotlines: dict[str, Hotline] = {}
        self.agents: dict[str, Agent] = {}
        self.devices: dict[int, str] = {}
        self.externals: dict[int, set[str]] = {}

    async def load(self) -> None:
        self.hotlines = {h.number: h for h in await admin.list_hotlines(self.session)}
        self.agents = {a.number: a for a in await admin.list_agents(self.session)}
        for target in await self.session.scalars(select(AgentTarget)):
            if target.kind is TargetKind.DEVICE:
                self.devices[target.agent_id] = target.address
            else:
                self.externals.setdefault(target.agent_id, set()).add(target.address)

    def at(self, loc: Loc) -> AbstractAsyncContextManager[None]:
        return _located(self.source, loc)

    async def record(
        self,
        change: Change,
        *,
        hotline: Hotline | None = None,
        agent: Agent | None = None,
    ) -> None:
        self.changes.append(change)
        await audit.record(
            self.session,
            actor=self.actor,
            action=change.action,
            path="cli",
            agent_id=agent.id if agent is not None else None,
            hotline_id=hotline.id if hotline is not None else None,
            via=self.via,
            key=change.key,
            changed={k: _plain(new) for k, (_, new) in change.fields.items()},
        )

    # agents ------------------------------------------------------------------------------

    async def free_targets(self, agents: Sequence[tuple[Loc, AgentConfig]]) -> None:
        """Before any target is added: remove the devices and numbers the file takes away,
        so a device can move from one agent to another in one apply."""
        for loc, spec in agents:
            agent = self.agents.get(spec.number)
            if agent is None:
                continue
            given = spec.model_fields_set
            async with self.at(loc):
                old_device = self.devices.get(agent.id)
                if "device" in given and old_device is not None and old_device != spec.device:
                    await admin.unbind_device(self.session, agent)
                if "external_numbers" in given:
                    for number in sorted(
                        self.externals.get(agent.id, set()) - set(spec.external_numbers)
                    ):
                        await admin.remove_external(self.session, agent, number)

    async def sync_agent(self, loc: Loc, spec: AgentConfig) -> Agent:
        given = spec.model_fields_set
        agent = self.agents.get(spec.number)
        async with self.at(loc):
            if agent is None:
                agent = await admin.create_agent(
                    self.session,
                    spec.number,
                    spec.name,
                    device=spec.device,
                    external_numbers=spec.external_numbers,
                    language=spec.language,
                )
                self.agents[agent.number] = agent
                fields: dict[str, tuple[Any, Any]] = {"name": (None, agent.name)}
                if spec.device is not None:
                    fields["device"] = (None, spec.device)
                if spec.external_numbers:
                    fields["external_numbers"] = (None, sorted(spec.external_numbers))
                if spec.language is not None:
                    fields["language"] = (None, spec.language)
                await self.record(Change("create", "agent", agent.number, fields), agent=agent)
                return agent
            fields = {}
            old_name = agent.name
            if await admin.update_agent(self.session, agent, name=spec.name):
                fields["name"] = (old_name, agent.name)
            old_language = agent.language
            if "language" in given and await admin.set_agent_language(
                self.session, agent, spec.language
            ):
                fields["language"] = (old_language, spec.language)
            old_device = self.devices.get(agent.id)
            if "device" in given and spec.device != old_device:
                if spec.device is not None:
                    await admin.bind_device(self.session, agent, spec.device)
                fields["device"] = (old_device, spec.device)
            old_numbers = self.externals.get(agent.id, set())
            if "external_numbers" in given and set(spec.external_numbers) != old_numbers:
                for number in sorted(set(spec.external_numbers) - old_numbers):
                    await admin.add_external(self.session, agent, number)
                fields["external_numbers"] = (sorted(old_numbers), sorted(spec.external_numbers))
            if fields:
                await self.record(Change("update", "agent", agent.number, fields), agent=agent)
        return agent

    async def delete_agent(self, agent: Agent) -> None:
        async with self.at(("agents",)):
            await self.record(
                Change("delete", "agent", agent.number, {"name": (agent.name, None)}),
                agent=agent,
            )
            await admin.delete_agent(self.session, agent)
        del self.agents[agent.number]

    # hotlines ----------------------------------------------------------------------------

    async def sync_hotline(self, loc: Loc, spec: HotlineConfig) -> Hotline:
        settings = spec.settings()
        hotline = self.hotlines.get(spec.number)
        async with self.at(loc):
            if hotline is None:
                name = settings.pop("name")
                hotline = await admin.create_hotline(self.session, spec.number, name, **settings)
                self.hotlines[hotline.number] = hotline
                await admin.add_holidays(self.session, hotline, spec.holidays)
                fields: dict[str, tuple[Any, Any]] = {"name": (None, name)}
                fields.update({k: (None, _plain(v)) for k, v in settings.items()})
                if spec.holidays:
                    fields["holidays"] = (None, _plain(sorted(spec.holidays)))
                await self.record(
                    Change("create", "hotline", hotline.number, fields), hotline=hotline
                )
                return hotline
            old = {k: getattr(hotline, k) for k in settings}
            changed = await admin.update_hotline(self.session, hotline, **settings)
            fields = {k: (_plain(old[k]), _plain(v)) for k, v in changed.items()}
            if "holidays" in spec.model_fields_set:
                before = set(await admin.holidays(self.session, hotline))
                wanted = set(spec.holidays)
                if before != wanted:
                    await admin.add_holidays(self.session, hotline, wanted - before)
                    if before - wanted:
                        await admin.remove_holidays(self.session, hotline, before - wanted)
                    fields["holidays"] = (_plain(sorted(before)), _plain(sorted(wanted)))
            if fields:
                await self.record(
                    Change("update", "hotline", hotline.number, fields), hotline=hotline
                )
        return hotline

    async def delete_hotline(self, hotline: Hotline) -> None:
        async with self.at(("hotlines",)):
            await self.record(
                Change("delete", "hotline", hotline.number, {"name": (hotline.name, None)}),
                hotline=hotline,
            )
            await admin.delete_hotline(self.session, hotline)
        del self.hotlines[hotline.number]

    # memberships -------------------------------------------------------------------------

    async def _agent(self, loc: Loc, number: str) -> Agent:
        agent = self.agents.get(number)
        if agent is None:
            raise self.source.error(
                loc, f"no agent with number {number} (neither in the file nor in the database)"
            )
        return agent

    async def add_member(self, loc: Loc, hotline: Hotline, agent: Agent) -> None:
        async with self.at(loc):
            await admin.add_member(self.session, hotline, agent)
            await self.record(
                Change("create", "member", f"{hotline.number}/{agent.number}"),
                hotline=hotline,
                agent=agent,
            )

    async def sync_members(
        self, loc: Loc, hotline: Hotline, numbers: list[str], *, prune: bool
    ) -> list[str]:
        """Make the file's members the hotline's first members, in the file's order; the
        others stay after them unless `prune`. Returns the members kept."""
        wanted = [await self._agent((*loc, i), n) for i, n in enumerate(numbers)]
        current = [a for _, a in await admin.members(self.session, hotline)]
        extra = [a for a in current if a.number not in numbers]
        if prune:
            for agent in extra:
                async with self.at(loc):
                    await self.record(
                        Change("delete", "member", f"{hotline.number}/{agent.number}"),
                        hotline=hotline,
                        agent=agent,
                    )
                    await admin.remove_member(self.session, hotline, agent)
            extra = []
        have = {a.number for a in current}
        for index, agent in enumerate(wanted):
            if agent.number not in have:
                await self.add_member((*loc, index), hotline, agent)
        order = [a for _, a in await admin.members(self.session, hotline)]
        target = wanted + extra
        if [a.number for a in order] != [a.number for a in target]:
            async with self.at(loc):
                await admin.reorder_members(self.session, hotline, target)
                await self.record(
                    Change(
                        "update",
                        "member order",
                        hotline.number,
                        {"members": ([a.number for a in current], [a.number for a in target])},
                    ),
                    hotline=hotline,
                )
        return [f"member {hotline.number}/{a.number}" for a in extra]


@asynccontextmanager
async def _savepoint(session: AsyncSession, dry_run: bool) -> AsyncIterator[None]:
    """A dry run does everything, then undoes it: the plan is what apply would really do,
    the errors included."""
    nested = await session.begin_nested()
    try:
        yield
    except BaseException:
        await nested.rollback()
        raise
    if dry_run:
        await nested.rollback()
    else:
        await nested.commit()


async def apply_config(
    session: AsyncSession,
    config: TownConfig,
    source: Source,
    *,
    actor: str,
    prune: bool = False,
    dry_run: bool = False,
) -> Result:
    """Make the database match `config` in the caller's transaction (one audit row per
    change); with `dry_run` nothing stays changed. Order: deletions (with prune), devices
    and numbers taken away, hotlines, agents, memberships."""
    sync = _Sync(session, source, actor, "config")
    kept: list[str] = []
    given = config.model_fields_set
    async with _savepoint(session, dry_run):
        await sync.load()
        if "agents" in given:
            listed = {a.number for a in config.agents}
            for agent in [a for n, a in sync.agents.items() if n not in listed]:
                if prune:
                    await sync.delete_agent(agent)
                else:
                    kept.append(f"agent {agent.number}")
        if "hotlines" in given:
            listed = {h.number for h in config.hotlines}
            for hotline in [h for n, h in sync.hotlines.items() if n not in listed]:
                if prune:
                    await sync.delete_hotline(hotline)
                else:
                    kept.append(f"hotline {hotline.number}")
        agents = [(("agents", i), a) for i, a in enumerate(config.agents)]
        await sync.free_targets(agents)
        hotlines = [
            (("hotlines", i), h, await sync.sync_hotline(("hotlines", i), h))
            for i, h in enumerate(config.hotlines)
        ]
        for loc, agent_spec in agents:
            await sync.sync_agent(loc, agent_spec)
        for (_, index), hotline_spec, hotline in hotlines:
            if "members" in hotline_spec.model_fields_set:
                kept += await sync.sync_members(
                    ("hotlines", index, "members"), hotline, hotline_spec.members, prune=prune
                )
    return Result(sync.changes, kept)


async def import_agents(
    session: AsyncSession, rows: Sequence[AgentRow], source: Source, *, actor: str
) -> Result:
    """Create or update the agents of a bulk import and add them to their hotlines (a
    membership is only ever added here). One transaction: a bad row changes nothing."""
    sync = _Sync(session, source, actor, "import")
    await sync.load()
    located = [((i,), row) for i, row in enumerate(rows)]
    await sync.free_targets(located)
    for loc, row in located:
        is_new = row.number not in sync.agents
        agent = await sync.sync_agent(loc, row)
        for number in row.hotlines:
            hotline = sync.hotlines.get(number)
            if hotline is None:
                raise source.error((*loc, "hotlines"), f"no hotline with number {number}")
            if is_new or await session.get(Membership, (hotline.id, agent.id)) is None:
                await sync.add_member((*loc, "hotlines"), hotline, agent)
    return Result(sync.changes, [])


async def set_pins(
    session: AsyncSession,
    rows: Sequence[tuple[int, str, str]],
    name: str,
    *,
    actor: str,
    min_length: int = PIN_MIN_LENGTH,
) -> int:
    """Set PINs from (line, agent number, PIN) rows, one audit row each (never the PIN)."""
    source = Source(name, {(i,): line for i, (line, _, _) in enumerate(rows)}, rows=True)
    for index, (_, number, pin) in enumerate(rows):
        async with _located(source, (index,)):
            agent = await admin.get_agent(session, number)
            await admin.set_pin(session, agent, pin, min_length=min_length)
            await audit.record(
                session, actor=actor, action="agent_set_pin", path="cli", agent_id=agent.id
            )
    return len(rows)


# --- exporting --------------------------------------------------------------------------


async def export_config(session: AsyncSession) -> dict[str, Any]:
    """The configuration as plain data in the schema's order: every hotline setting,
    holidays and members in ring order; agents with device and external numbers. Never a
    PIN or its hash."""
    hotlines = await admin.list_hotlines(session)
    agents = await admin.list_agents(session)
    by_id = {a.id: a.number for a in agents}
    days: dict[int, list[str]] = {}
    for holiday in await session.scalars(select(Holiday).order_by(Holiday.day)):
        days.setdefault(holiday.hotline_id, []).append(holiday.day.isoformat())
    members: dict[int, list[str]] = {}
    rows = await session.scalars(
        select(Membership).order_by(Membership.hotline_id, Membership.position)
    )
    for membership in sorted(rows, key=lambda m: (m.hotline_id, m.position, by_id[m.agent_id])):
        members.setdefault(membership.hotline_id, []).append(by_id[membership.agent_id])
    targets = await agent_targets(session)
    settings = [n for n in HotlineConfig.model_fields if n in admin.HOTLINE_SETTINGS]
    return {
        "version": SCHEMA_VERSION,
        "hotlines": [
            {
                **{n: _plain(getattr(h, n)) for n in settings},
                "holidays": days.get(h.id, []),
                "members": members.get(h.id, []),
            }
            for h in hotlines
        ],
        "agents": [
            {
                "number": a.number,
                "name": a.name,
                "device": targets.get(a.id, (None, []))[0],
                "external_numbers": targets.get(a.id, (None, []))[1],
                "language": a.language,
            }
            for a in agents
        ],
    }


async def agent_targets(session: AsyncSession) -> dict[int, tuple[str | None, list[str]]]:
    """Every agent's device and external numbers (sorted), in one query."""
    result: dict[int, tuple[str | None, list[str]]] = {}
    rows = await session.scalars(select(AgentTarget).order_by(AgentTarget.address))
    for target in rows:
        device, numbers = result.get(target.agent_id, (None, []))
        if target.kind is TargetKind.DEVICE:
            device = target.address
        else:
            numbers = [*numbers, target.address]
        result[target.agent_id] = (device, numbers)
    return result


async def export_agents(session: AsyncSession) -> list[dict[str, Any]]:
    """Agents with device, external numbers and hotlines: what `agent import` reads."""
    agents = await admin.list_agents(session)
    targets = await agent_targets(session)
    hotline_numbers = {h.id: h.number for h in await admin.list_hotlines(session)}
    member_of: dict[int, list[str]] = {}
    for membership in await session.scalars(select(Membership)):
        member_of.setdefault(membership.agent_id, []).append(hotline_numbers[membership.hotline_id])
    return [
        {
            "number": a.number,
            "name": a.name,
            "device": targets.get(a.id, (None, []))[0],
            "external_numbers": targets.get(a.id, (None, []))[1],
            "hotlines": sorted(member_of.get(a.id, [])),
        }
        for a in agents
    ]


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def dump_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def agents_csv(agents: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(AGENT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for agent in agents:
        writer.writerow(
            {
                **{k: agent[k] or "" for k in ("number", "name", "device")},
                "external_numbers": _LIST_SEPARATOR.join(agent["external_numbers"]),
                "hotlines": _LIST_SEPARATOR.join(agent["hotlines"]),
            }
        )
    return out.getvalue()
