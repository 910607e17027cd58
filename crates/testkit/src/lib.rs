//! zkrepl's test kit: what the tests, the benchmarks and the `gen`, `bench`
//! and `demo` commands need around the engine, and nothing the engine needs.
//!
//! - [`local`]: local ZooKeeper servers and ensembles on loopback ports;
//! - [`lagging`]: a 3-member ensemble whose member 0 can be made to lag;
//! - [`treegen`]: deterministic test trees (Pegasus-shaped, wide, deep, large);
//! - [`proxy`]: a fault-injection TCP proxy (cut, refuse, stall, slow down);
//! - [`pegasus`]: a simulated Pegasus meta server (wire protocol, leader
//!   election and metadata in a real ZooKeeper);
//! - [`ceilings`]: raw server ceilings measured with the bare client, the
//!   baselines the benchmarks report ratios to;
//! - [`secure`]: a throwaway PKI and the settings of a server with a TLS
//!   client port, x509 ids and SASL users;
//! - [`kerberos`]: a Kerberos KDC on loopback (MIT krb5), principals and
//!   keytabs;
//! - [`load`]: a write load at a fixed rate, bounded in count and time,
//!   that a live sync is tested and measured against.

pub mod ceilings;
pub mod kerberos;
pub mod lagging;
pub mod load;
pub mod local;
pub mod pegasus;
pub mod proxy;
pub mod secure;
pub mod treegen;
