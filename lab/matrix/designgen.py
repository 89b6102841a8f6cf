"""A seeded generator of network designs for `ftlab selftest` (issue 19, item 3).

A design is 1-4 devices in series between the client and the server. Each device is a router with
a NAT (alg scapy / kernel / kernel-nft / off, masquerade, forwards of 21, 990 and the passive range,
1:1 NAT), a filter (static rules in the lab's own format, an iptables-save file, an nftables
ruleset, a dynamic filter), or both; idle timeouts; dual-stack addresses; FTP.DATA statements on
both ends. NAT devices before the "internet" face the client's site (masquerade), those after it
face the server's (forwards or 1:1 NAT); the internet router sits between them and routes only
public prefixes. Public subnets come from the documentation ranges, private ones from RFC 1918.

    spec = generate(seed, index)          # a plain dict: the design, before it is written
    files = write(spec, folder)           # {file name: text}: the YAML and its ruleset files
    design(seed, index, folder)           # generate, write and load it (repairing until it loads)

A design is described by its `spec` (a list of device dicts and FTP statements) so that `shrink` can
drop a device, a rule or a statement and write the design again.
"""

from __future__ import annotations

import copy
import ipaddress
import random
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ALGS = ("scapy", "kernel", "kernel-nft", "off")
FILTERS = ("static", "iptables", "nftables", "dynamic")
PUBLIC4 = [ipaddress.ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24")]
PASSIVE_RANGES = ["(60000,60100)", "(50000,50040)"]


def _rng(seed: int, index: int) -> random.Random:
    return random.Random(f"ftlab-designgen/{seed}/{index}")


# -- the spec ---------------------------------------------------------------------------------------

def _static_rules(r: random.Random, passive: str | None) -> list[dict]:
    rules = [{"action": "accept", "dport": 21, "comment": "control"},
             {"action": "accept", "dport": 990, "comment": "implicit control"}]
    if passive and r.random() < 0.8:
        lo, hi = passive.strip("()").split(",")
        rules.append({"action": "accept", "dport": f"{lo}-{hi}", "comment": "passive range"})
    if r.random() < 0.6:
        rules.append({"action": "accept", "sport": 20, "comment": "active data"})
    if r.random() < 0.3:
        rules.append({"action": "accept", "sport": 989, "comment": "implicit active data"})
    if r.random() < 0.25:
        rules.insert(0, {"action": "drop", "proto": "udp", "dport": 53, "comment": "no dns"})
    if r.random() < 0.2:
        rules.append({"action": "accept", "proto": "icmp"})
    r.shuffle(rules) if r.random() < 0.15 else None
    return rules


def _filter(r: random.Random, kind: str, passive: str | None) -> dict:
    f: dict = {"kind": kind}
    if kind == "static":
        f["default"] = "drop" if r.random() < 0.85 else "accept"
        f["rules"] = _static_rules(r, passive)
    elif kind in ("iptables", "nftables"):
        f["helper"] = r.random() < 0.3          # the kernel FTP helper attached by the file itself
        f["log"] = r.random() < 0.4              # LOG / log rules that never decide
        f["established"] = r.random() < 0.92
        f["rules"] = _static_rules(r, passive)
    else:
        if r.random() < 0.3:
            f["pinhole_lifetime"] = r.choice([10, 30, 60])
    if r.random() < 0.25:
        f["idle_timeout"] = r.choice([60, 300, 3600])
    return f


def generate(seed: int, index: int) -> dict:
    """The spec of design `index` of `seed`: deterministic (a string-seeded Random of its own)."""
    r = _rng(seed, index)
    n = r.choice([1, 1, 2, 2, 3, 4])
    server_st: dict = {}
    passive = r.choice(PASSIVE_RANGES) if r.random() < 0.75 else None
    if passive:
        server_st["PASSIVEDATAPORTS"] = passive
    if r.random() < 0.3:
        server_st["TLSRFCLEVEL"] = r.choice(["RFC4217", "CCCNONOTIFY", "DRAFT"])
    if r.random() < 0.15:
        server_st["SECURE_FTP"] = r.choice(["ALLOWED", "REQUIRED"])
    if r.random() < 0.1:
        server_st["FTPKEEPALIVE"] = 5
    client_st: dict = {}
    if server_st.get("TLSRFCLEVEL") == "CCCNONOTIFY":
        client_st["TLSRFCLEVEL"] = "CCCNONOTIFY"     # both ends agree on close_notify at CCC
    if r.random() < 0.25:
        client_st["PASSIVEIGNOREADDR"] = r.choice(["TRUE", "FALSE"])
    if r.random() < 0.2:
        client_st["EPSV4"] = r.choice(["TRUE", "FALSE"])
    if r.random() < 0.1:
        client_st["FWFRIENDLY"] = "TRUE"
    devices = []
    for _ in range(n):
        roll = r.random()
        if roll < 0.45:
            kinds = ["nat"]
        elif roll < 0.8:
            kinds = [r.choice(FILTERS)]
        else:
            kinds = ["nat", r.choice(FILTERS)]
        dev: dict = {}
        if "nat" in kinds:
            dev["nat"] = {"alg": r.choice(ALGS), "masquerade": r.random() < 0.9,
                          "one_to_one": r.random() < 0.2, "forward_passive": r.random() < 0.6,
                          "forward_990": r.random() < 0.85, "forward_21": r.random() < 0.95}
            if r.random() < 0.2:
                dev["nat"]["idle_timeout"] = r.choice([60, 300, 3600])
        fk = [k for k in kinds if k != "nat"]
        if fk:
            dev["filter"] = _filter(r, fk[0], passive)
        devices.append(dev)
    nats = [i for i, d in enumerate(devices) if "nat" in d]
    # NATs before the internet face the client's site, those after it the server's
    split = r.randint(0, len(devices)) if nats else None
    if split is not None:
        server_side = [i for i in nats if i >= split]
        for i in server_side[:-1]:             # one NAT on the server's side (the loader's forwards
            del devices[i]["nat"]              # name the server itself); the others keep a filter
            devices[i].setdefault("filter", {"kind": "dynamic"})
        for i in nats:
            n = devices[i].get("nat")
            if n is None:
                continue
            if i < split and not (i == 0 and n["one_to_one"]):
                n["masquerade"] = True         # a client-side NAT without 1:1 for the client masquerades
            if i >= split and i != len(devices) - 1:
                n["one_to_one"] = False        # 1:1 only for the server's own router
    return {"seed": seed, "index": index, "name": f"gen-{seed}-{index}", "devices": devices,
            "internet_at": split, "dual_stack": r.random() < 0.6,
            "server": server_st, "client": client_st}


# -- writing it -------------------------------------------------------------------------------------

@dataclass
class _Seg:
    """One link of the chain: between node i and node i+1."""
    private: bool
    net4: ipaddress.IPv4Network
    net6: ipaddress.IPv6Network
    left: str = ""
    right: str = ""

    def addr(self, side: str, v6: bool = False):
        net = self.net6 if v6 else self.net4
        return net.network_address + (1 if side == "left" else 2) if v6 else (
            net.network_address + (1 if side == "left" else 2))


@dataclass
class Written:
    spec: dict
    path: Path
    files: dict = field(default_factory=dict)


def _nodes_chain(spec: dict) -> list[tuple[str, dict | None, str]]:
    """[(node name, device or None, side)], side 'c' (faces the client's site), 's' or '' (internet,
    client, server)."""
    chain: list[tuple[str, dict | None, str]] = [("client", None, "")]
    split = spec["internet_at"]
    for i, d in enumerate(spec["devices"]):
        if split is not None and i == split:
            chain.append(("internet", None, ""))
        chain.append((f"r{i + 1}", d, "c" if split is None or i < split else "s"))
    if split is not None and split >= len(spec["devices"]):
        chain.append(("internet", None, ""))
    chain.append(("server", None, ""))
    return chain


def _segments(spec: dict, chain) -> list[_Seg]:
    """Realms: public next to the internet (or everywhere without one), private behind a NAT."""
    n = len(chain) - 1
    if spec["internet_at"] is None:
        private = [False] * n
    else:
        inet = next(i for i, (name, _, _) in enumerate(chain) if name == "internet")
        private = [False] * n
        realm = False
        for seg in range(inet - 1, -1, -1):      # toward the client: behind each client-side NAT, private
            node = chain[seg + 1]
            if node[1] is not None and "nat" in node[1] and node[0] != "internet":
                realm = True
            private[seg] = realm
        realm = False
        for seg in range(inet, n):               # toward the server
            node = chain[seg]
            if node[1] is not None and "nat" in node[1]:
                realm = True
            private[seg] = realm
    segs = []
    pub = priv = 0
    for i in range(n):
        if private[i]:
            net4 = ipaddress.ip_network(f"10.{priv + 1}.{i}.0/24")
            net6 = ipaddress.ip_network(f"fd00:{priv + 1}:{i}::/64")
            priv += 1
        else:
            base = PUBLIC4[pub % 3]
            net4 = list(base.subnets(new_prefix=26))[pub // 3]
            net6 = ipaddress.ip_network(f"2001:db8:{pub + 1}::/64")
            pub += 1
        segs.append(_Seg(private[i], net4, net6, chain[i][0], chain[i + 1][0]))
    return segs


def _addrs(seg: _Seg, side: str, dual: bool) -> list[str] | str:
    a4 = f"{seg.addr(side)}/{seg.net4.prefixlen}"
    if not dual:
        return a4
    return [a4, f"{seg.addr(side, True)}/{seg.net6.prefixlen}"]


def _iptables(f: dict, name: str) -> str:
    lines = ["# generated by lab.matrix.designgen"]
    if f.get("helper"):
        lines += ["*raw", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
                  "-A PREROUTING -p tcp --dport 21 -j CT --helper ftp", "COMMIT"]
    lines += ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    if f.get("established", True):
        lines.append("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    if f.get("log"):
        lines.append('-A FORWARD -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[fw] "')
    for rule in f["rules"]:
        proto = rule.get("proto", "tcp")
        m = ["-A FORWARD"]
        if proto != "any":
            m.append(f"-p {proto}")
        if "sport" in rule:
            m.append(f"--sport {str(rule['sport']).replace('-', ':')}")
        if "dport" in rule:
            m.append(f"--dport {str(rule['dport']).replace('-', ':')}")
        if proto == "tcp" and "dport" in rule and rule.get("action") == "accept":
            m.insert(2, "-m conntrack --ctstate NEW") if f.get("established", True) else None
        if rule.get("comment"):
            m.append(f'-m comment --comment "{rule["comment"]}"')
        m.append("-j " + ("ACCEPT" if rule["action"] == "accept" else "DROP"))
        lines.append(" ".join(m))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _nft(f: dict, name: str) -> str:
    out = ["# generated by lab.matrix.designgen", "flush ruleset", "table inet filter {"]
    if f.get("helper"):
        out += ['  ct helper ftp-standard {', '    type "ftp" protocol tcp', '  }',
                "  chain pre {", "    type filter hook prerouting priority 0;",
                '    tcp dport 21 ct helper set "ftp-standard"', "  }"]
    out += ["  chain forward {", "    type filter hook forward priority 0; policy drop;"]
    if f.get("established", True):
        out.append("    ct state established,related accept")
    if f.get("log"):
        out.append('    limit rate 3/minute log prefix "fw "')
    for rule in f["rules"]:
        proto = rule.get("proto", "tcp")
        m = []
        if proto == "icmp":
            m.append("meta l4proto icmp")
        elif "sport" in rule or "dport" in rule:
            if "sport" in rule:
                m.append(f"{proto} sport {rule['sport']}")
            if "dport" in rule:
                m.append(f"{proto} dport {rule['dport']}")
        else:
            m.append(f"meta l4proto {proto}")
        if rule.get("log_counter"):
            m.append("counter")
        m.append("accept" if rule["action"] == "accept" else "drop")
        if rule.get("comment"):
            m.append(f'comment "{rule["comment"]}"')
        out.append("    " + " ".join(m))
    out += ["  }", "}"]
    return "\n".join(out) + "\n"


def render(spec: dict) -> dict[str, str]:
    """{file name: text}: `<name>.yaml` and the ruleset files it names."""
    dual = spec["dual_stack"]
    chain = _nodes_chain(spec)
    segs = _segments(spec, chain)
    names = [c[0] for c in chain]
    files: dict[str, str] = {}
    nodes: dict[str, dict] = {}
    links = [{s.left: _addrs(s, "left", dual), s.right: _addrs(s, "right", dual)} for s in segs]
    inet = names.index("internet") if "internet" in names else None

    def neighbour_addr(i: int, toward: int) -> tuple[str, str]:
        seg = segs[i - 1] if toward < i else segs[i]
        side = "left" if toward < i else "right"
        return str(seg.addr(side)), str(seg.addr(side, True))

    # what the outside sees of each server-side node: the address the previous hop forwards to
    listen: dict[int, str] = {}
    listen6: dict[int, str] = {}
    server_i = len(chain) - 1
    listen[server_i] = str(segs[-1].addr("right"))
    listen6[server_i] = str(segs[-1].addr("right", True))
    one_to_one_pub: dict[int, str] = {}
    for i in range(server_i - 1, 0, -1):
        name, dev, side = chain[i]
        if dev is not None and "nat" in dev and side == "s":
            out_seg = segs[i - 1]
            if dev["nat"]["one_to_one"] and i == server_i - 1:
                pub = str(out_seg.net4.network_address + 20)
                one_to_one_pub[i] = pub
                listen[i] = pub
            else:
                listen[i] = str(out_seg.addr("right"))
            listen6[i] = str(out_seg.addr("right", True))
        else:
            listen[i] = listen[i + 1]
            listen6[i] = listen6[i + 1]

    for i, (name, dev, side) in enumerate(chain):
        node: dict = {"kind": "host" if name in ("client", "server") else "router"}
        if name == "client":
            a4, a6 = neighbour_addr(i, i + 1)
            node["gateway"] = [a4, a6] if dual else a4
        elif name == "server":
            a4, a6 = neighbour_addr(i, i - 1)
            node["gateway"] = [a4, a6] if dual else a4
        elif name == "internet":
            node["description"] = "routes only public prefixes; no default route"
            routes = []
            for j, s in enumerate(segs):
                if j in (i - 1, i) or s.private:
                    continue
                via = neighbour_addr(i, i - 1 if j < i else i + 1)
                routes.append({"to": str(s.net4), "via": via[0]})
                if dual:
                    routes.append({"to": str(s.net6), "via": via[1]})
            if routes:
                node["routes"] = routes
        else:
            # default toward the internet (or the server without one); explicit routes the other way
            toward_default = i + 1 if (inet is None or i < inet) else i - 1
            back = i - 1 if toward_default == i + 1 else i + 1
            via_d = neighbour_addr(i, toward_default)
            routes = [{"to": "default", "via": via_d[0]}]
            if dual:
                routes.append({"to": "default", "via": via_d[1]})
            via_b = neighbour_addr(i, back)
            step = -1 if back < i else 1
            j = i + step
            while 0 < j < len(chain) - 1:
                seg = segs[j - 1] if step < 0 else segs[j]
                if ("nat" in (chain[j][1] or {})) or chain[j][0] == "internet":
                    break
                routes.append({"to": str(seg.net4), "via": via_b[0]})
                if dual:
                    routes.append({"to": str(seg.net6), "via": via_b[1]})
                j += step
            node["routes"] = routes
            if dev is not None and "nat" in dev:
                nat_c = dev["nat"]
                outside = chain[i + 1][0] if side == "c" else chain[i - 1][0]
                nat: dict = {"outside": outside, "masquerade": bool(nat_c["masquerade"]), "alg": nat_c["alg"]}
                if nat_c.get("idle_timeout"):
                    nat["idle_timeout"] = nat_c["idle_timeout"]
                if side == "s":
                    target = listen[i + 1]
                    if i in one_to_one_pub:
                        nat["one_to_one"] = [{"public": one_to_one_pub[i], "to": target}]
                    else:
                        fw = []
                        if nat_c["forward_21"]:
                            fw.append({"proto": "tcp", "ports": 21, "to": target})
                        if nat_c["forward_990"]:
                            fw.append({"proto": "tcp", "ports": 990, "to": target})
                        pr = spec["server"].get("PASSIVEDATAPORTS")
                        if pr and nat_c["forward_passive"]:
                            lo, hi = pr.strip("()").split(",")
                            fw.append({"proto": "tcp", "ports": f"{lo}-{hi}", "to": target})
                        if fw:
                            nat["forwards"] = fw
                elif nat_c["one_to_one"] and i == 1 and not nat_c["masquerade"]:
                    nat["one_to_one"] = [{"public": str(segs[i].net4.network_address + 20),
                                          "to": str(segs[0].addr("left"))}]
                node["nat"] = nat
            if dev is not None and "filter" in dev:
                f = dev["filter"]
                if f["kind"] == "static":
                    fw = {"mode": "static", "default": f["default"], "rules": copy.deepcopy(f["rules"])}
                elif f["kind"] == "dynamic":
                    fw = {"mode": "dynamic"}
                    if f.get("pinhole_lifetime"):
                        fw["pinhole_lifetime"] = f["pinhole_lifetime"]
                elif f["kind"] == "iptables":
                    fname = f"{spec['name']}-{name}.rules"
                    files[fname] = _iptables(f, name)
                    fw = {"mode": "static", "iptables_save": fname}
                else:
                    fname = f"{spec['name']}-{name}.nft"
                    files[fname] = _nft(f, name)
                    fw = {"nftables": fname}
                if f.get("idle_timeout") and not (dev.get("nat") or {}).get("idle_timeout"):
                    fw["idle_timeout"] = f["idle_timeout"]
                node["firewall"] = fw
        nodes[name] = node
    ftp: dict = {"client": "client", "server": "server", "server_address": listen[1]}
    if dual and not one_to_one_pub:          # 1:1 NAT is IPv4's: no address to dial over IPv6
        ftp["server_address6"] = listen6[1]
    if spec["server"]:
        ftp["server_statements"] = dict(spec["server"])
    if spec["client"]:
        ftp["client_statements"] = dict(spec["client"])
    doc = {"name": spec["name"], "description": describe(spec), "ftp": ftp, "nodes": nodes, "links": links}
    if inet is not None:
        doc["internet"] = "internet"
    files[f"{spec['name']}.yaml"] = (f"# generated by lab.matrix.designgen: seed {spec['seed']}, design "
                                     f"{spec['index']}\n" + yaml.safe_dump(doc, sort_keys=False, width=200))
    return files


def device_kinds(spec: dict) -> list[tuple[str, str]]:
    """[(router name, kind/mode)] - the table's rows: nat/scapy, nat/kernel+masq..., filter/static..."""
    out = []
    for name, dev, side in _nodes_chain(spec):
        if dev is None:
            continue
        if "nat" in dev:
            n = dev["nat"]
            mode = f"nat/{n['alg']}" + ("/1:1" if n["one_to_one"] else "") + ("" if n["masquerade"] else "/no-masq")
            out.append((name, mode + ("/server-side" if side == "s" else "/client-side")))
        if "filter" in dev:
            f = dev["filter"]
            mode = f"filter/{f['kind']}" + ("/helper" if f.get("helper") else "")
            out.append((name, mode))
    return out


def describe(spec: dict) -> str:
    parts = [m for _, m in device_kinds(spec)]
    return (f"generated (seed {spec['seed']}, design {spec['index']}): client -> "
            + " -> ".join(parts or ["nothing"]) + " -> server" + (", dual stack" if spec["dual_stack"] else ""))


def write(spec: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    files = render(spec)
    for fname, text in files.items():
        (folder / fname).write_text(text)
    return folder / f"{spec['name']}.yaml"


def loads(path: Path) -> str | None:
    """None when `lab.topology.loader.load` takes the file, else why it refused."""
    from lab.errors import InputError
    from lab.topology import loader
    try:
        loader.load(str(path))
    except InputError as exc:
        return "; ".join(str(p) for p in exc.problems)[:400]
    return None


def _repair(spec: dict, attempt: int) -> dict:
    """A simpler variant of a refused design: first drop the internet's place, then devices."""
    s = copy.deepcopy(spec)
    r = _rng(spec["seed"], spec["index"] * 1000 + attempt)
    if s["devices"] and (attempt % 2 == 1 or len(s["devices"]) > 1):
        s["devices"].pop(r.randrange(len(s["devices"])))
    nats = [i for i, d in enumerate(s["devices"]) if "nat" in d]
    if not nats:
        s["internet_at"] = None
    elif s["internet_at"] is not None:
        s["internet_at"] = min(s["internet_at"], len(s["devices"]))
    if not s["devices"]:
        s["devices"] = [{"filter": {"kind": "dynamic"}}]
    return s


@dataclass
class Design:
    spec: dict
    path: Path
    refusals: list[str]


def design(seed: int, index: int, folder: Path, tries: int = 6) -> Design:
    """Generate design `index`, write it to `folder` and load it; a refused design is repaired
    (simplified) and written again, each refusal counted."""
    spec = generate(seed, index)
    refusals: list[str] = []
    for attempt in range(tries):
        path = write(spec, folder)
        why = loads(path)
        if why is None:
            return Design(spec, path, refusals)
        refusals.append(why)
        spec = _repair(spec, attempt + 1)
    raise RuntimeError(f"design {seed}/{index} refused {tries} times: {refusals[-1]}")


def loads_spec(spec: dict, folder: Path) -> bool:
    return loads(write(spec, folder)) is None
