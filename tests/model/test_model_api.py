"""The public surface of ``amber.model`` is kept on purpose."""

from __future__ import annotations

import inspect

import amber.model

EXPECTED = {
    "DEFAULT_LIMITS",
    "FrozenDict",
    "FrozenList",
    "check_key",
    "check_table",
    "compile_where",
    "diff",
    "freeze",
    "json_equal",
    "merge_patch",
    "new_id",
    "pack",
    "thaw",
    "unpack",
    "unpack_plain",
}


def test_all_is_sorted_and_complete() -> None:
    assert amber.model.__all__ == sorted(amber.model.__all__)
    assert set(amber.model.__all__) == EXPECTED
    for name in amber.model.__all__:
        assert hasattr(amber.model, name), name


def test_public_functions_have_docstrings() -> None:
    for name in amber.model.__all__:
        obj = getattr(amber.model, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), name


def test_signatures_others_build_on() -> None:
    def params(name: str) -> list[str]:
        return list(inspect.signature(getattr(amber.model, name)).parameters)

    assert params("freeze") == ["value", "limits"]
    assert params("check_table") == ["name", "limits"]
    assert params("check_key") == ["key", "limits"]
    assert params("merge_patch") == ["target", "patch"]
    assert params("diff") == ["old", "new"]
    assert params("json_equal") == ["a", "b"]
    assert params("compile_where") == ["spec"]
    assert params("unpack") == ["data"]
    assert params("unpack_plain") == ["data"]
    assert params("pack") == ["obj"]
    assert params("new_id") == []
