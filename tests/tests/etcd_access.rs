//! etcd as in production: TLS, client certificates, authentication on. Each node connects as
//! the etcd user its certificate names, with the role the master gave it (`sdnctl nodes
//! authorize`): it reads what agents read and writes only its own keys, so a node cannot write
//! another node's record, a subnet, a service or the network config.

use std::time::Duration;

use sdn_tests::node::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_writes_its_own_keys_and_is_refused_everything_else() {
    let c = match Cluster::start_secure("etcd-roles", 2).await {
        Ok(cluster) => cluster,
        Err(err) => panic!("starting the cluster with etcd auth: {err}"),
    };
    // Agents with their own credentials register, get subnets, attach and record pods.
    let a1 = c.nodes[0].attach_pod("a1").await.expect("pod a1");
    let b1 = c.nodes[1].attach_pod("b1").await.expect("pod b1");
    assert!(a1.ns.ping(b1.ip, 1, 56, false), "pods on nodes with their own credentials\n{}", c.logs());
    let recorded = sdn_tests::wait::until(Duration::from_secs(10), || async {
        let (ok, out, err) = c.cp.masters[0].sdnctl(&["pods", "list"]).map_err(|e| e.to_string())?;
        if ok && out.contains(&a1.ip.to_string()) && out.contains(&b1.ip.to_string()) {
            Ok(())
        } else {
            Err(out + &err)
        }
    })
    .await;
    assert!(recorded.is_ok(), "each node recorded its pods: {recorded:?}");

    let (a, b) = (&c.nodes[0].name, &c.nodes[1].name);
    let client = c.cp.etcd.config_as("/sdn", a).connect().await.expect("connecting as node a");
    let mut kv = client.kv_client();
    let refused = [
        (format!("/sdn/nodes/{b}"), "another node's record"),
        (format!("/sdn/node-ips/{}", c.nodes[1].ip), "another node's IP claim"),
        (format!("/sdn/pods/{b}/x:eth0"), "another node's pod record"),
        (format!("/sdn/subnets/{a}"), "a subnet, even its own"),
        ("/sdn/subnet-claims/10.1.99.0-24".to_owned(), "a subnet claim"),
        ("/sdn/services/default/forged".to_owned(), "a service"),
        ("/sdn/endpoints/default/forged".to_owned(), "endpoints"),
        ("/sdn/config/network".to_owned(), "the network config"),
    ];
    for (key, what) in &refused {
        let put = kv.put(key.as_str(), "{}", None).await;
        let said = put.as_ref().err().map(ToString::to_string).unwrap_or_default();
        assert!(said.contains("permission denied"), "node {a} wrote {what} ({key}): {put:?}");
    }
    for key in [format!("/sdn/nodes/{a}"), format!("/sdn/pods/{a}/probe:eth0")] {
        let read = kv.get(key.as_str(), None).await.expect("a node reads its own keys");
        let value = read.kvs().first().map(|kv| kv.value().to_vec()).unwrap_or_else(|| b"{}".to_vec());
        kv.put(key.as_str(), value, None).await.unwrap_or_else(|e| panic!("node {a} writing {key}: {e}"));
    }
    kv.delete(format!("/sdn/pods/{a}/probe:eth0"), None).await.expect("delete its own pod record");
    let everything = kv.get("/sdn/", Some(etcd_client::GetOptions::new().with_prefix())).await;
    assert!(everything.is_ok_and(|r| !r.kvs().is_empty()), "a node reads the registry");

    // A node the master never authorized is refused from its first write on.
    let stranger = c.cp.etcd.config_as("/sdn", "").connect().await.expect("connecting with a certificate of no user");
    let put = stranger.kv_client().put(format!("/sdn/nodes/{a}"), "{}", None).await;
    assert!(put.is_err(), "an unknown user wrote: {put:?}");

    // Revoking takes the rights away.
    let (ok, out, err) = c.cp.masters[0].sdnctl(&["nodes", "revoke", a]).expect("sdnctl");
    assert!(ok, "{out}{err}");
    let put = kv.put(format!("/sdn/nodes/{a}"), "{}", None).await;
    assert!(put.is_err(), "a revoked node wrote: {put:?}");
}
