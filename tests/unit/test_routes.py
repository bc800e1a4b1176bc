"""Routes as tables, handlers as functions; parameters read one way; the store reached only through services."""

from __future__ import annotations

import ast
import asyncio
import base64

import pytest

from api import params
from api.errors import BadParam
from api.request import ApiRequest, ApiResponse, UploadedFile
from api.routing import STOMP_ONLY, RouteDef, Router
from tests.conftest import ROOT

HANDLER_MODULES = ("repo/handlers.py", "grouping/handlers.py", "watcher/handlers.py")


async def _echo(request: ApiRequest, ctx: str) -> ApiResponse:
    return ApiResponse(200, {"ctx": ctx, "params": request.path_params})


def test_a_table_is_registered_with_its_context_bound() -> None:
    router = Router()
    table = (RouteDef("GET", "/api/v1/things/{thing}", _echo, "a thing"),
             RouteDef("POST", "/api/v1/things", _echo, "add one", public=True, transports=STOMP_ONLY))
    router.add_table(table, "the context")
    route, found = router.match("GET", "/api/v1/things/x", "rest")
    assert (route.method, route.pattern, route.summary, route.public) == ("GET", "/api/v1/things/{thing}", "a thing",
                                                                          False)
    request = ApiRequest("GET", "/api/v1/things/x", path_params=found)

    async def call() -> ApiResponse:
        return await route.handler(request)

    assert asyncio.run(call()).body == {"ctx": "the context", "params": {"thing": "x"}}
    posted, _ = router.match("POST", "/api/v1/things", "stomp")
    assert posted.public and posted.transports == STOMP_ONLY


def test_base64_images_refuse_urls_and_drop_a_data_prefix() -> None:
    encoded = base64.b64encode(b"jpeg bytes").decode()
    assert params.b64(encoded, "image") == b"jpeg bytes"
    assert params.b64("data:image/jpeg;base64," + encoded, "image") == b"jpeg bytes"
    for value, reason in (("https://example.com/a.jpg", "image URLs are not fetched; send the image bytes"),
                          ("not base64!", "image is not valid base64"), ("", "image must be a base64 string"),
                          (3, "image must be a base64 string")):
        with pytest.raises(BadParam) as caught:
            params.b64(value, "image")
        assert (caught.value.reason, caught.value.param) == (reason, "image")


def test_an_image_is_a_multipart_file_or_base64_and_never_a_url() -> None:
    upload = ApiRequest("POST", "/", files=[UploadedFile("image", "a.jpg", "image/jpeg", b"raw")])
    assert params.uploaded_image(upload) == b"raw"
    as_json = ApiRequest("POST", "/", body=b'{"file": "%s"}' % base64.b64encode(b"raw"))
    assert params.uploaded_image(as_json) == b"raw"
    with pytest.raises(BadParam, match="image URLs are not fetched"):
        params.image(ApiRequest("POST", "/"), {"url": "http://x"}, "file")
    with pytest.raises(BadParam, match="missing image 'file'"):
        params.uploaded_image(ApiRequest("POST", "/"))


def test_scalars_and_lists() -> None:
    assert params.boolean("Yes", "force") is True and params.boolean("", "force") is False
    with pytest.raises(BadParam, match="force must be true or false"):
        params.boolean("maybe", "force")
    assert params.number(None, "limit", 7, 0, 10) == 7 and params.number("2.5", "limit", 0, 0, 10) == 2.5
    with pytest.raises(BadParam, match="limit must be between 0 and 10"):
        params.number(11, "limit", 0, 0, 10)
    assert params.string_list(" a, b ,,", "galleries") == ["a", "b"]
    with pytest.raises(BadParam, match="galleries must be a list of strings"):
        params.string_list([1], "galleries")
    with pytest.raises(BadParam, match="groups must be a non-empty list of ids"):
        params.id_list([], "groups")
    assert params.name("Kit Harington-2.jpg", "name") == "Kit Harington-2.jpg"
    with pytest.raises(BadParam, match="name must be 1-200 ASCII letters"):
        params.name("a/b", "name")


def _store_uses(path: str) -> list[str]:
    tree = ast.parse((ROOT / path).read_text())
    return [f"{path}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "store"]


@pytest.mark.parametrize("path", HANDLER_MODULES)
def test_handlers_reach_the_store_only_through_their_service(path: str) -> None:
    assert _store_uses(path) == []


def test_no_package_reads_parameters_from_another_packages_handlers() -> None:
    for path in HANDLER_MODULES:
        tree = ast.parse((ROOT / path).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {m for m in imported if m.endswith(".handlers")}, path
