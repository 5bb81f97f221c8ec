import pytest

@pytest.mark.parametrize("i", range(10))
def test_smoke(client, i):
    r = client.get("/v2.0/networks")
    assert r.status_code == 200
