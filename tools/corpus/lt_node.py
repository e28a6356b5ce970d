#!/usr/bin/python3
"""One libtorrent (rasterbar) node, driven by a JSON config. Run with /usr/bin/python3 inside a netns.

Seeds run until SIGTERM; a leecher exits 0 once every torrent is complete (plus `linger` seconds).
Everything that could reach a public host is off: DHT bootstrap (only the configured local
node), LSD (unless asked), UPnP, NAT-PMP, no trackers except the local one in the .torrent.
"""
import json
import signal
import sys
import time

import libtorrent as lt

ENC = {"disabled": lt.enc_policy.disabled, "enabled": lt.enc_policy.enabled, "forced": lt.enc_policy.forced}
LEVEL = {"plaintext": lt.enc_level.plaintext, "rc4": lt.enc_level.rc4, "both": lt.enc_level.both}

stop = False


def on_term(*_):
    global stop
    stop = True


def main() -> int:
    cfg = json.loads(sys.argv[1])
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    tcp, utp = cfg.get("tcp", True), cfg.get("utp", False)
    s = {
        "listen_interfaces": f"{cfg['ip']}:{cfg['port']}",
        "outgoing_interfaces": "",
        "enable_dht": bool(cfg.get("dht")),
        "dht_bootstrap_nodes": cfg.get("dht_bootstrap", ""),
        "enable_lsd": bool(cfg.get("lsd")),
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "enable_outgoing_tcp": tcp,
        "enable_incoming_tcp": tcp,
        "enable_outgoing_utp": utp,
        "enable_incoming_utp": utp,
        "out_enc_policy": ENC[cfg.get("enc", "enabled")],
        "in_enc_policy": ENC[cfg.get("enc", "enabled")],
        "allowed_enc_level": LEVEL[cfg.get("level", "both")],
        "prefer_rc4": cfg.get("level", "both") == "rc4",
        "allow_multiple_connections_per_ip": True,
        "user_agent": "msewatch-corpus/libtorrent " + lt.__version__,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
        | lt.alert.category_t.peer_notification | lt.alert.category_t.dht_notification,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_enforce_node_id": False,
        "dht_prefer_verified_node_ids": False,
        "dht_ignore_dark_internet": False,
        "dht_extended_routing_table": False,
        "dht_aggressive_lookups": True,
        "min_announce_interval": 5,
        "local_service_announce_interval": 2,
        "connection_speed": 50,
        "peer_connect_timeout": 5,
        "handshake_timeout": 10,
        "auto_manage_startup": 1,
    }
    # "local_service_announce_interval" and some DHT knobs do not exist in every build; drop unknowns.
    known = lt.default_settings()
    sess = lt.session({k: v for k, v in s.items() if k in known})
    if cfg.get("dht"):
        for node in cfg.get("dht_nodes", []):
            h, p = node.rsplit(":", 1)
            sess.add_dht_node((h, int(p)))

    handles = []
    for t in cfg["torrents"]:
        info = lt.torrent_info(t["torrent"])
        atp = lt.add_torrent_params()
        atp.ti = info
        atp.save_path = t["save"]
        if t.get("seed"):
            atp.flags |= lt.torrent_flags.seed_mode
        atp.flags &= ~lt.torrent_flags.auto_managed
        atp.flags &= ~lt.torrent_flags.paused
        if not t.get("trackers", True):
            atp.trackers = []
        handles.append(sess.add_torrent(atp))

    peers = [tuple((p.rsplit(":", 1)[0], int(p.rsplit(":", 1)[1]))) for p in cfg.get("peers", [])]
    leech = not cfg.get("seed", False)
    done_at = None
    last_connect = 0.0
    last_dht = 0.0
    deadline = time.time() + cfg.get("timeout", 120)
    while not stop and time.time() < deadline:
        now = time.time()
        for a in sess.pop_alerts():
            if cfg.get("verbose"):
                print(f"{now:.3f} {a.what()}: {a.message()}", flush=True)
        if peers and now - last_connect > 2:
            last_connect = now
            for h in handles:
                st = h.status()
                if st.num_peers == 0:
                    for p in peers:
                        h.connect_peer(p)
        if cfg.get("dht_announce") and now - last_dht > 3:
            last_dht = now
            for h in handles:
                h.force_dht_announce()
        if leech:
            if all(h.status().is_seeding for h in handles):
                if done_at is None:
                    done_at = now
                    print(f"{now:.3f} complete", flush=True)
                if now - done_at >= cfg.get("linger", 1.0):
                    break
        time.sleep(0.1)
    for a in sess.pop_alerts():
        if cfg.get("verbose"):
            print(f"{a.what()}: {a.message()}", flush=True)
    ok = (not leech) or all(h.status().is_seeding for h in handles)
    sess.pause()
    for h in handles:
        sess.remove_torrent(h)
    time.sleep(0.5)
    del sess
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
