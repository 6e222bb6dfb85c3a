"""Static files load fast and are never stale; pages are never compressed."""

import gzip
import re
from pathlib import Path

import pytest


def asset_links(page: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/(?:static|bootstrap/static)/[^"]+)"', page)


def test_every_page_links_its_files_by_content_and_describes_itself(client):
    page = client.get("/").get_data(as_text=True)
    links = asset_links(page)
    assert {link.split("?")[0] for link in links} >= {
        "/static/app.css",
        "/static/app.js",
        "/static/theme.js",
        "/bootstrap/static/css/bootstrap.min.css",
        "/bootstrap/static/js/bootstrap.min.js",
    }
    assert all(re.search(r"\?v=[\w.-]+$", link.replace("&amp;", "&")) for link in links), links
    assert "popper" not in page  # no page has a dropdown or tooltip
    assert re.search(r'<meta name="description" content="Planning poker for agile teams[^"]+">', page)


def test_a_file_named_by_content_is_kept_a_year_and_compressed(client):
    for link in asset_links(client.get("/").get_data(as_text=True)):
        if "favicon" in link:
            continue  # an SVG of 300 bytes, not worth compressing
        plain = client.get(link)
        packed = client.get(link, headers={"Accept-Encoding": "gzip"})
        assert packed.status_code == plain.status_code == 200, link
        assert (
            "immutable" in packed.headers["Cache-Control"]
            and "max-age=31536000" in packed.headers["Cache-Control"]
        )
        assert packed.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(packed.get_data()) == plain.get_data()
        if len(plain.get_data()) > 20_000:
            assert len(packed.get_data()) < len(plain.get_data()) / 3, link  # CSS: 232 kB to 31 kB


@pytest.mark.parametrize("version", ["", "?v=0123456789ab", "?v=1.0.0"])
def test_a_file_asked_by_another_name_is_checked_each_time(client, version):
    response = client.get(f"/static/app.css{version}")
    assert response.status_code == 200
    assert "immutable" not in response.headers.get("Cache-Control", "")


def test_a_changed_file_gets_a_new_address(app, client, tmp_path):
    before = asset_links(client.get("/").get_data(as_text=True))
    folder = tmp_path / "static"
    folder.mkdir()
    for name in ("app.css", "app.js", "theme.js", "favicon.svg"):
        (folder / name).write_bytes((Path(str(app.static_folder)) / name).read_bytes())
    (folder / "app.css").write_bytes((folder / "app.css").read_bytes() + b"\n.changed { color: red; }\n")
    app.static_folder = str(folder)
    after = asset_links(client.get("/").get_data(as_text=True))
    changed = {link for link in after if link.startswith("/static/app.css")}
    assert changed and changed.isdisjoint(before)
    assert [link for link in after if "app.js" in link] == [link for link in before if "app.js" in link]
    assert b".changed" in client.get(changed.pop()).get_data()


@pytest.mark.parametrize("path", ["/", "/login"])
def test_pages_are_not_compressed(client, path):
    response = client.get(path, headers={"Accept-Encoding": "gzip, br, zstd"})
    assert response.status_code == 200 and "Content-Encoding" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"


def test_a_file_that_is_not_there_is_404_whatever_its_version(client):
    assert client.get("/static/missing.css?v=-").status_code == 404
    assert client.get("/static/../config.py?v=-").status_code == 404
