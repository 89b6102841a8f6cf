"""lab.matrix.designgen: deterministic per seed, every design loads, every kind and mode appears."""

from __future__ import annotations

from collections import Counter

from lab.matrix import designgen as g


def test_deterministic_per_seed(tmp_path):
    for seed in (0, 1, 7):
        for i in range(10):
            assert g.generate(seed, i) == g.generate(seed, i)
            assert g.render(g.generate(seed, i)) == g.render(g.generate(seed, i))
    assert [g.generate(1, i) for i in range(10)] != [g.generate(2, i) for i in range(10)]


def test_every_design_of_seeds_0_to_199_loads(tmp_path):
    raw_refused = 0
    for seed in range(200):
        index = seed % 17
        if g.loads(g.write(g.generate(seed, index), tmp_path / f"raw{seed}")) is not None:
            raw_refused += 1
        d = g.design(seed, index, tmp_path / f"d{seed}")
        assert g.loads(d.path) is None, (seed, d.refusals)
    # measured: 3 of 200 refused before repair (a 1:1 address or a forward the loader does not take)
    assert raw_refused <= 10


def test_kinds_and_modes_all_appear(tmp_path):
    kinds = Counter()
    sizes = Counter()
    dual = 0
    for i in range(200):
        spec = g.generate(1, i)
        sizes[len(spec["devices"])] += 1
        dual += spec["dual_stack"]
        for _, mode in g.device_kinds(spec):
            kinds[mode.split("/")[1]] += 1
            kinds["1:1"] += "/1:1" in mode
            kinds["server-side"] += mode.endswith("server-side")
            kinds["client-side"] += mode.endswith("client-side")
            kinds["helper"] += mode.endswith("/helper")
    for k in (*g.ALGS, *g.FILTERS, "1:1", "server-side", "client-side", "helper"):
        assert kinds[k] > 0, k
    assert set(sizes) == {1, 2, 3, 4}
    assert 0 < dual < 200


def test_addresses_documentation_and_rfc1918(tmp_path):
    import ipaddress

    import yaml
    docs = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    for i in range(50):
        text = g.render(g.generate(3, i))[f"gen-3-{i}.yaml"]
        for link in yaml.safe_load(text)["links"]:
            for ends in link.values():
                for a in ([ends] if isinstance(ends, str) else ends):
                    ip = ipaddress.ip_interface(a).ip
                    if ip.version == 4:
                        assert ip.is_private and not any(ip in d for d in docs) or any(ip in d for d in docs), a
                        assert any(ip in d for d in docs) or ip in ipaddress.ip_network("10.0.0.0/8"), a
                    else:
                        assert ip in ipaddress.ip_network("2001:db8::/32") or ip in ipaddress.ip_network("fd00::/8")
