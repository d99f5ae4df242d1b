"""A CloudFormation-aware YAML loader and a resolver for its intrinsic functions.

The local stack reads template.yaml itself (tables, routes, stream mappings,
environment) so that what runs locally is what deploys. Short-form tags
(`!Ref`, `!GetAtt`, `!Sub`, ...) load as their long `Fn::` forms; `resolve`
then evaluates them against parameters and the physical names the local stack
gave each resource.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml

_SHORT_TAGS = {
    "!Ref": "Ref",
    "!Condition": "Condition",
    "!GetAtt": "Fn::GetAtt",
    "!Sub": "Fn::Sub",
    "!Join": "Fn::Join",
    "!Select": "Fn::Select",
    "!Split": "Fn::Split",
    "!If": "Fn::If",
    "!Equals": "Fn::Equals",
    "!Not": "Fn::Not",
    "!And": "Fn::And",
    "!Or": "Fn::Or",
    "!FindInMap": "Fn::FindInMap",
    "!GetAZs": "Fn::GetAZs",
    "!Base64": "Fn::Base64",
    "!ImportValue": "Fn::ImportValue",
    "!Cidr": "Fn::Cidr",
    "!Transform": "Fn::Transform",
}


class TemplateError(Exception):
    """The template cannot be read or resolved; the message is one clear line."""


def parse_parameter_overrides(text: str) -> dict[str, str]:
    """`sam deploy --parameter-overrides` syntax: space-separated Key=Value,
    values quoted as a shell quotes them ('A="x y" B=1'). TemplateError
    naming a token that is not Key=Value."""
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise TemplateError(f"PARAMETER_OVERRIDES cannot be read: {exc}") from None
    found: dict[str, str] = {}
    for token in tokens:
        name, sep, value = token.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9]+", name):
            raise TemplateError(f"PARAMETER_OVERRIDES: {token!r} is not Key=Value")
        found[name] = value
    return found


def check_parameters(template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
    """What CloudFormation refuses before it deploys: a name the template does
    not declare, a value outside AllowedValues or AllowedPattern, a Number
    that is not one or is outside MinValue/MaxValue. One line naming each."""
    declared = template.get("Parameters") or {}
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)} "
                            f"(the template declares {', '.join(sorted(declared))})")
    problems: list[str] = []
    for name, value in parameters.items():
        spec = declared[name] if isinstance(declared[name], dict) else {}
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(a) for a in allowed]:
            problems.append(f"{name}={value!r} is not one of {', '.join(str(a) for a in allowed)}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(str(pattern), value):
            problems.append(f"{name}={value!r} does not match {pattern}")
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                problems.append(f"{name}={value!r} is not a number")
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                problems.append(f"{name}={value} is below its MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                problems.append(f"{name}={value} is above its MaxValue {spec['MaxValue']}")
    if problems:
        raise TemplateError("template parameter(s) refused: " + "; ".join(problems))


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation's short-form tags."""


def _construct(fn_name: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if fn_name == "Fn::GetAtt":
                # `!GetAtt Res.Attr` is the short form of ["Res", "Attr"].
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {fn_name: value}

    return construct


for _tag, _fn in _SHORT_TAGS.items():
    CfnLoader.add_constructor(_tag, _construct(_fn))


def load_template(path: str | Path) -> dict[str, Any]:
    """Load a template file; any failure becomes a one-line TemplateError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read template {p}: {exc.strerror}") from None
    try:
        doc = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise TemplateError(f"template {p} is not valid YAML{where}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise TemplateError(f"template {p} has no Resources section")
    return doc


_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


class Resolver:
    """Evaluates intrinsic functions with local values.

    `refs` maps a logical id or parameter name to what `!Ref` returns;
    `attrs` maps (logical id, attribute) to what `!GetAtt` returns.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str] | None = None,
        refs: Mapping[str, Any] | None = None,
        attrs: Mapping[tuple[str, str], Any] | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        stack_name: str = "billing-functions-local",
    ) -> None:
        self.template = template
        self.refs: dict[str, Any] = {
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::StackName": stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": _NO_VALUE,
        }
        for name, spec in (template.get("Parameters") or {}).items():
            if parameters and name in parameters:
                self.refs[name] = parameters[name]
            elif isinstance(spec, dict) and "Default" in spec:
                self.refs[name] = spec["Default"]
        self.refs.update(refs or {})
        self.attrs = dict(attrs or {})
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = self._FUNCTIONS.get(key)
            if handler is not None:
                return handler(self, arg)
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not _NO_VALUE}

    # -- intrinsic functions -------------------------------------------------

    def _ref(self, name: Any) -> Any:
        if name not in self.refs:
            raise TemplateError(f"!Ref {name}: no local value for it")
        return self.refs[name]

    def _get_att(self, arg: Any) -> Any:
        arg = self.resolve(arg)
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        key = (str(arg[0]), str(arg[1]))
        if key not in self.attrs:
            raise TemplateError(f"!GetAtt {key[0]}.{key[1]}: no local value for it")
        return self.attrs[key]

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, extra = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, extra = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in extra:
                return str(extra[name])
            if "." in name and name not in self.refs:
                return str(self._get_att(name.split(".", 1)))
            return str(self._ref(name))

        return _SUB_VAR.sub(replace, str(text)).replace("${!", "${")

    def _join(self, arg: Any) -> str:
        sep, items = arg
        return str(sep).join(str(i) for i in self.resolve(items))

    def _select(self, arg: Any) -> Any:
        index, items = self.resolve(arg)
        return items[int(index)]

    def _split(self, arg: Any) -> list[str]:
        sep, text = self.resolve(arg)
        return str(text).split(str(sep))

    def _if(self, arg: Any) -> Any:
        name, when_true, when_false = arg
        return self.resolve(when_true if self.condition(name) else when_false)

    def _equals(self, arg: Any) -> bool:
        a, b = self.resolve(arg)
        return bool(str(a) == str(b))

    def _not(self, arg: Any) -> bool:
        return not self._truth(arg[0])

    def _and(self, arg: Any) -> bool:
        return all(self._truth(a) for a in arg)

    def _or(self, arg: Any) -> bool:
        return any(self._truth(a) for a in arg)

    def _truth(self, value: Any) -> bool:
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(value["Condition"])
        return bool(self.resolve(value))

    def _find_in_map(self, arg: Any) -> Any:
        name, top, second = self.resolve(arg)
        try:
            return self.template["Mappings"][name][top][second]
        except (KeyError, TypeError):
            raise TemplateError(f"!FindInMap {name}.{top}.{second}: not in Mappings") from None

    def _get_azs(self, _arg: Any) -> list[str]:
        region = self.refs["AWS::Region"]
        return [f"{region}a", f"{region}b", f"{region}c"]

    def _base64(self, arg: Any) -> str:
        import base64

        return base64.b64encode(str(self.resolve(arg)).encode()).decode()

    def _condition_ref(self, arg: Any) -> bool:
        return self.condition(str(arg))

    def _unsupported(self, arg: Any) -> Any:
        raise TemplateError("template uses an intrinsic the local stack cannot evaluate")

    _FUNCTIONS: ClassVar[dict[str, Callable[[Resolver, Any], Any]]] = {
        "Ref": _ref,
        "Fn::GetAtt": _get_att,
        "Fn::Sub": _sub,
        "Fn::Join": _join,
        "Fn::Select": _select,
        "Fn::Split": _split,
        "Fn::If": _if,
        "Fn::Equals": _equals,
        "Fn::Not": _not,
        "Fn::And": _and,
        "Fn::Or": _or,
        "Fn::FindInMap": _find_in_map,
        "Fn::GetAZs": _get_azs,
        "Fn::Base64": _base64,
        "Condition": _condition_ref,
        "Fn::ImportValue": _unsupported,
        "Fn::Cidr": _unsupported,
        "Fn::Transform": _unsupported,
    }


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()
