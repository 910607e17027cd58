//! Apache Pegasus support for zkrepl: the meta-server client and the
//! procedures that move a Pegasus cluster's metadata between ZooKeeper
//! ensembles. Built on the engine's copy, verify and digest entry points.
