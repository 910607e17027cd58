//! Wire tests: every message both ways against bytes written out by hand
//! from the IDL (idl/meta_admin.thrift, idl/duplication.thrift,
//! idl/bulk_load.thrift, idl/backup.thrift, idl/partition_split.thrift)
//! and the framing of src/rpc/thrift_message_parser.cpp.

use crate::frame::{self, LengthError, Reply, ReplyError};
use crate::level::Level;
use crate::messages as m;
use crate::thrift::{self, DecodeError, DecodeResult, Reader, RpcAddress, Writer};

/// Bytes from hex, spaces ignored.
fn h(hex: &str) -> Vec<u8> {
    let digits: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap()).collect()
}

/// A Thrift string: i32 big-endian length, then the bytes.
fn s(text: &str) -> Vec<u8> {
    let mut v = (text.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(text.as_bytes());
    v
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// The 48-byte v0 header for a body of `len` bytes and a 5000 ms timeout.
fn header(len: u32) -> Vec<u8> {
    cat(&[
        b"THFT".to_vec(),
        h("00000000 00000030 00000000"), // version 0, header length 48, header crc 0
        len.to_be_bytes().to_vec(),
        h("00000000 00000000 00000000"), // body crc, app_id, partition_index
        h("00001388"),                   // client_timeout 5000 ms
        h("00000000 0000000000000000"),  // thread_hash, partition_hash
    ])
}

/// A call's body: MessageBegin(CALL), args { 1: request }, STOP.
fn call_body(code: &str, seqid: u32, request: &[u8]) -> Vec<u8> {
    cat(&[h("80010001"), s(code), seqid.to_be_bytes().to_vec(), h("0c 0001"), request.to_vec(), h("00")])
}

fn encode(code: &str, request: impl FnOnce(&mut Writer)) -> Vec<u8> {
    frame::encode_request(code, 7, 5000, request)
}

fn expect_call(code: &str, request: impl FnOnce(&mut Writer), request_bytes: &str) {
    let body = call_body(code, 7, &h(request_bytes));
    let want = cat(&[header(body.len() as u32), body]);
    assert_eq!(encode(code, request), want, "{code}");
}

/// A reply after its length prefix: transport error, MessageBegin(REPLY),
/// and when ERR_OK the result { 0: response } and STOP.
fn reply(code: &str, seqid: u32, transport: &str, response: Option<&[u8]>) -> Vec<u8> {
    let mut v = cat(&[s(transport), h("80010002"), s(&format!("{code}_ACK")), seqid.to_be_bytes().to_vec()]);
    if let Some(r) = response {
        v.extend(cat(&[h("0c 0000"), r.to_vec(), h("00")]));
    }
    v
}

fn decode<T>(code: &str, response: &[u8], read: impl FnOnce(&mut Reader<'_>) -> DecodeResult<T>) -> T {
    match frame::decode_reply(&reply(code, 7, "ERR_OK", Some(response)), code, 7, read) {
        Ok(Reply { response: Some(v), .. }) => v,
        other => panic!("{code}: {:?}", other.map(|r| r.transport_error)),
    }
}

/// `err` (field 1, type STRUCT): the error code as a bare string.
fn err(code: &str) -> Vec<u8> {
    cat(&[h("0c 0001"), s(code)])
}

#[test]
fn cluster_info_request_is_the_v0_header_and_an_empty_struct() {
    let want = cat(&[
        h("54484654 00000000 00000030 00000000"), // "THFT", v0, 48, crc
        h("00000024"),                            // body: 36 bytes
        h("00000000 00000000 00000000 00001388 00000000 0000000000000000"),
        h("80010001"),
        s("RPC_CM_CLUSTER_INFO"),
        h("00000007"),
        h("0c 0001 00 00"), // args { 1: {} } STOP
    ]);
    assert_eq!(want.len(), 48 + 36);
    assert_eq!(encode(m::RPC_CM_CLUSTER_INFO, m::cluster_info_request), want);
}

#[test]
fn every_request_is_encoded_as_the_idl_says() {
    expect_call(m::RPC_CM_CONTROL_META, m::control_meta_request(Level::Blind), "08 0001 000000c8 00");
    expect_call(m::RPC_CM_CONTROL_META, m::control_meta_request(Level::Invalid), "08 0001 00002710 00");
    expect_call(m::RPC_CM_LIST_NODES, m::list_nodes_request(m::NS_INVALID), "08 0001 00000000 00");
    expect_call(m::RPC_CM_LIST_APPS, m::list_apps_request(m::AS_INVALID), "08 0001 00000000 00");
    // { 1: "" pattern, 2: PMT_MATCH_ALL }
    expect_call(m::RPC_CM_LIST_DUPLICATION, m::list_duplication_request, "0b 0001 00000000 08 0002 00000001 00");
    expect_call(m::RPC_CM_QUERY_DUPLICATION, m::query_duplication_request("temp"), "0b 0001 00000004 74656d70 00");
    expect_call(m::RPC_CM_QUERY_BULK_LOAD_STATUS, m::query_bulk_load_request("temp"), "0b 0001 00000004 74656d70 00");
    expect_call(m::RPC_CM_QUERY_PARTITION_SPLIT, m::query_split_request("temp"), "0b 0001 00000004 74656d70 00");
    expect_call(m::RPC_CM_QUERY_BACKUP_STATUS, m::query_backup_status_request(3), "08 0001 00000003 00");
}

#[test]
fn levels_have_the_enum_values_and_only_five_names_parse() {
    let codes: Vec<i32> = Level::SETTABLE.iter().map(|l| l.code()).collect();
    assert_eq!(codes, [100, 200, 300, 400, 500]);
    assert_eq!(Level::Invalid.code(), 10000);
    assert_eq!("blind".parse::<Level>(), Ok(Level::Blind));
    assert_eq!("Steady".parse::<Level>(), Ok(Level::Steady));
    for bad in ["invalid", "fl_blind", "", "blindd", "10000", "200"] {
        let e = bad.parse::<Level>().unwrap_err();
        assert!(e.to_string().contains("one of stopped, blind, freezed, steady, lively"), "{bad}: {e}");
    }
    assert_eq!(Level::from_code(300), Some(Level::Freezed));
    assert_eq!(Level::from_code(0), None);
}

#[test]
fn cluster_info_response_decodes_and_skips_unknown_fields() {
    let response = cat(&[
        err("ERR_OK"),
        // an unknown struct field holding a list and a nested struct
        h("0c 0009  08 0001 00000005  0f 0002 08 00000002 00000001 00000002  0c 0003 0a 0001 0000000000000001 00  00"),
        h("0f 0002 0b 00000002"),
        s("meta_servers"),
        s("zookeeper_root"),
        // an unknown map, set and double between the lists
        h("0d 000a 0b 08 00000001"),
        s("k"),
        h("00000003"),
        h("0e 000b 0a 00000001 0000000000000009"),
        h("04 000c 3ff0000000000000"),
        h("0f 0003 0b 00000002"),
        s("10.0.0.1:34601,10.0.0.2:34601"),
        s("/pegasus/c1"),
        h("00"),
    ]);
    let r = decode(m::RPC_CM_CLUSTER_INFO, &response, m::read_cluster_info);
    assert_eq!(r.err, "ERR_OK");
    assert_eq!(r.get("meta_servers"), Some("10.0.0.1:34601,10.0.0.2:34601"));
    assert_eq!(r.get("zookeeper_root"), Some("/pegasus/c1"));
    assert_eq!(r.entries.len(), 2);
}

#[test]
fn a_follower_answers_forward_to_others_as_a_bare_string() {
    let response = cat(&[err("ERR_FORWARD_TO_OTHERS"), h("0f 0002 0b 00000000 0f 0003 0b 00000000 00")]);
    let r = decode(m::RPC_CM_CLUSTER_INFO, &response, m::read_cluster_info);
    assert_eq!(r.err, "ERR_FORWARD_TO_OTHERS");
    assert!(r.entries.is_empty());

    let response = cat(&[err("ERR_FORWARD_TO_OTHERS"), h("08 0002 00000000 00")]);
    let r = decode(m::RPC_CM_CONTROL_META, &response, m::read_control_meta);
    assert_eq!((r.err.as_str(), r.old_level), ("ERR_FORWARD_TO_OTHERS", 0));
}

#[test]
fn control_meta_response_carries_the_old_level() {
    let response = cat(&[err("ERR_OK"), h("08 0002 00000190 00")]);
    let r = decode(m::RPC_CM_CONTROL_META, &response, m::read_control_meta);
    assert_eq!(Level::from_code(r.old_level), Some(Level::Steady));
}

#[test]
fn list_nodes_decodes_rpc_address_and_host_port_with_a_negative_port() {
    let response = cat(&[
        err("ERR_OK"),
        h("0f 0002 0c 00000002"),
        // node 1: alive, 10.0.0.1:34801 (0x87f1), host_port replica1:40960 (i16 -24576 = 0xa000), type 1
        // rpc_address: field type STRUCT (0c), a bare i64 payload
        h("08 0001 00000001  0c 0002 0a000001 87f1 0001  0c 0003"),
        s("replica1"),
        h("a000 01"),
        h("06 0063 1234 00"), // unknown i16 field 99, then STOP
        // node 2: unalive, rpc_address only
        h("08 0001 00000002  0c 0002 0a000002 87f1 0001 00"),
        h("00"),
    ]);
    let r = decode(m::RPC_CM_LIST_NODES, &response, m::read_list_nodes);
    assert_eq!(r.infos.len(), 2);
    let hp = r.infos[0].hp_node.as_ref().expect("host_port");
    assert_eq!((hp.host.as_str(), hp.port, hp.host_type), ("replica1", 40960, 1));
    assert_eq!(r.infos[0].address(), "replica1:40960");
    assert_eq!(r.infos[1].status, m::NS_UNALIVE);
    assert_eq!(r.infos[1].address(), "10.0.0.2:34801");
    assert_eq!(RpcAddress::new("10.0.0.2".parse().unwrap(), 34801), r.infos[1].node);
}

#[test]
fn host_port_round_trips_ports_above_32767() {
    let mut w = Writer::new();
    thrift::write_host_port(&mut w, &thrift::HostPort { host: "h".into(), port: 65535, host_type: 1 });
    assert_eq!(w.into_bytes(), cat(&[s("h"), h("ffff 01")]));
    let bytes = cat(&[s("h"), h("8000 01")]);
    assert_eq!(thrift::read_host_port(&mut Reader::new(&bytes)).unwrap().port, 32768);
}

#[test]
fn gpid_has_the_app_id_in_the_low_half() {
    assert_eq!(thrift::gpid(2, 5), 0x0000_0005_0000_0002);
    assert_eq!(thrift::split_gpid(0x0000_0005_0000_0002), (2, 5));
    assert_eq!(thrift::split_gpid(thrift::gpid(-1, 7)), (-1, 7));
}

/// An app_info with fields 1-15; `extra` goes before STOP.
fn app_info(name: &str, id: u32, partitions: u32, extra: &[u8]) -> Vec<u8> {
    cat(&[
        h("08 0001 00000001"), // AS_AVAILABLE
        h("0b 0002"),
        s("pegasus"),
        h("0b 0003"),
        s(name),
        h("08 0004"),
        id.to_be_bytes().to_vec(),
        h("08 0005"),
        partitions.to_be_bytes().to_vec(),
        h("0d 0006 0b 0b 00000001"),
        s("replica.deny_client_request"),
        s("timeout*all"),
        h("02 0007 01  08 0008 00000003  0a 0009 0000000000000000  0a 000a 0000000065000000  0a 000b 0000000000000000"),
        h("02 000c 00  08 000d 00000008  02 000e 01  02 000f 00"),
        extra.to_vec(),
        h("00"),
    ])
}

#[test]
fn list_apps_decodes_app_info_and_skips_fields_it_does_not_know() {
    let response = cat(&[
        err("ERR_OK"),
        h("0f 0002 0c 00000002"),
        app_info("temp", 2, 8, &[]),
        app_info("stat", 3, 4, &cat(&[h("0b 0010"), s("a field from a newer meta")])),
        h("0b 0003"),
        s("hint"),
        h("00"),
    ]);
    let r = decode(m::RPC_CM_LIST_APPS, &response, m::read_list_apps);
    assert_eq!(r.infos.len(), 2);
    let a = &r.infos[0];
    assert_eq!((a.app_name.as_str(), a.app_id, a.partition_count, a.status), ("temp", 2, 8, m::AS_AVAILABLE));
    assert_eq!(a.app_type, "pegasus");
    assert_eq!(a.max_replica_count, 3);
    assert_eq!(a.envs.get("replica.deny_client_request").map(String::as_str), Some("timeout*all"));
    assert_eq!((a.duplicating, a.is_bulk_loading), (Some(false), Some(true)));
    assert_eq!(r.infos[1].app_name, "stat");
}

/// A duplication_entry: id, status, remote, create_ts, progress map, and
/// partition_states (map<i32, struct>) to be skipped.
fn dup_entry(id: u32, status: u32) -> Vec<u8> {
    cat(&[
        h("08 0001"),
        id.to_be_bytes().to_vec(),
        h("08 0002"),
        status.to_be_bytes().to_vec(),
        h("0b 0003"),
        s("backup-cluster"),
        h("0a 0004 0000000000000001"),
        h("0d 0005 08 0a 00000001 00000000 0000000000000064"),
        h("0d 000b 08 0c 00000001 00000000  0a 0001 0000000000000064 0a 0002 0000000000000065 00"),
        h("00"),
    ])
}

#[test]
fn list_duplication_decodes_entries_per_app() {
    let response = cat(&[
        err("ERR_OK"),
        h("0b 0002"),
        s(""),
        h("0d 0003 0b 0c 00000001"),
        s("temp"),
        // duplication_app_state { 1: appid, 2: map<i32, entry>, 3: app_name, 4: partition_count }
        h("08 0001 00000002  0d 0002 08 0c 00000002  00000001"),
        dup_entry(1, 3),
        h("00000002"),
        dup_entry(2, 4),
        h("0b 0003"),
        s("temp"),
        h("08 0004 00000008 00"),
        h("00"),
    ]);
    let r = decode(m::RPC_CM_LIST_DUPLICATION, &response, m::read_list_duplication);
    let entries = &r.apps["temp"];
    assert_eq!(entries.iter().map(|e| (e.dupid, e.status)).collect::<Vec<_>>(), [(1, 3), (2, 4)]);
    assert_eq!(m::duplication_status_name(entries[0].status), "log");
}

#[test]
fn query_duplication_decodes_one_apps_entries() {
    let response = cat(&[err("ERR_OK"), h("08 0003 00000002  0f 0004 0c 00000001"), dup_entry(5, 2), h("00")]);
    let r = decode(m::RPC_CM_QUERY_DUPLICATION, &response, m::read_query_duplication);
    assert_eq!(
        (r.appid, r.entries.len(), r.entries[0].dupid, r.entries[0].remote.as_str()),
        (2, 1, 5, "backup-cluster")
    );
}

#[test]
fn bulk_load_response_skips_states_keyed_by_address_and_host_port() {
    let state = h("08 0001 00000064  0c 0002 00000006 4552525f4f4b  08 0003 00000000 00"); // download_status "ERR_OK"
    let response = cat(&[
        err("ERR_OK"),
        h("0b 0002"),
        s("temp"),
        h("08 0003 00000001"),             // downloading
        h("0f 0004 08 00000001 00000001"), // partitions_status
        h("08 0005 00000003"),
        h("0f 0006 0d 00000001  0c 0c 00000001  0a000001 87f1 0001"), // map<rpc_address, state>
        state.clone(),
        h("0b 0007"),
        s("hint"),
        h("02 0008 01"),
        h("0f 0009 0d 00000001  0c 0c 00000001"), // map<host_port, state>
        s("replica1"),
        h("87f1 01"),
        state,
        h("00"),
    ]);
    let r = decode(m::RPC_CM_QUERY_BULK_LOAD_STATUS, &response, m::read_query_bulk_load);
    assert_eq!((r.err.as_str(), r.app_status, r.is_bulk_loading), ("ERR_OK", 1, Some(true)));
}

#[test]
fn backup_status_decodes_items() {
    let item = |id: &str, end: &str, failed: &str| {
        cat(&[
            h(&format!("0a 0001 {id}")),
            h("0b 0002"),
            s("temp"),
            h("0b 0003"),
            s("hdfs"),
            h("0b 0004"),
            s("/backup"),
            h("0a 0005 0000000000000001"),
            h(&format!("0a 0006 {end} 02 0007 {failed} 00")),
        ])
    };
    let response = cat(&[
        err("ERR_OK"),
        h("0b 0002"),
        s("2 backups"),
        h("0f 0003 0c 00000002"),
        item("0000000000000009", "0000000000000000", "00"),
        item("000000000000000a", "0000000000000005", "00"),
        h("00"),
    ]);
    let r = decode(m::RPC_CM_QUERY_BACKUP_STATUS, &response, m::read_query_backup_status);
    assert_eq!(r.items.iter().map(|b| (b.backup_id, b.in_progress())).collect::<Vec<_>>(), [(9, true), (10, false)]);
}

#[test]
fn split_response_counts_partitions_with_a_status() {
    let response =
        cat(&[err("ERR_OK"), h("08 0002 00000010  0d 0003 08 08 00000002 00000000 00000001 00000001 00000001 00")]);
    let r = decode(m::RPC_CM_QUERY_PARTITION_SPLIT, &response, m::read_query_split);
    assert_eq!((r.new_partition_count, r.partitions_splitting), (16, 2));
    let response =
        cat(&[err("ERR_INVALID_STATE"), h("08 0002 00000000 0b 0004"), s("app(temp) is not splitting"), h("00")]);
    let r = decode(m::RPC_CM_QUERY_PARTITION_SPLIT, &response, m::read_query_split);
    assert_eq!(r.err, "ERR_INVALID_STATE");
}

#[test]
fn a_transport_error_carries_no_result() {
    let bytes = reply(m::RPC_CM_LIST_DUPLICATION, 7, "ERR_HANDLER_NOT_FOUND", None);
    let r = frame::decode_reply(&bytes, m::RPC_CM_LIST_DUPLICATION, 7, m::read_list_duplication).unwrap();
    assert_eq!((r.transport_error.as_str(), r.response.is_none()), ("ERR_HANDLER_NOT_FOUND", true));
}

#[test]
fn reply_lengths_are_bounded() {
    assert_eq!(frame::reply_length(h("00000040").try_into().unwrap()), Ok(64));
    assert_eq!(frame::reply_length(h("01000000").try_into().unwrap()), Ok(16 << 20));
    assert_eq!(frame::reply_length(h("01000001").try_into().unwrap()), Err(LengthError::TooLong((16 << 20) + 1)));
    assert_eq!(frame::reply_length(h("00000004").try_into().unwrap()), Err(LengthError::TooShort(4)));
    assert_eq!(frame::reply_length(h("ffffffff").try_into().unwrap()), Err(LengthError::TooShort(-1)));
    // What a ZooKeeper or HTTP server's first bytes read as.
    assert!(frame::reply_length(*b"HTTP").is_err());
}

#[test]
fn truncated_replies_are_refused_wherever_they_end() {
    let response =
        cat(&[err("ERR_OK"), h("0f 0002 0b 00000001"), s("meta_servers"), h("0f 0003 0b 00000001"), s("x"), h("00")]);
    let full = reply(m::RPC_CM_CLUSTER_INFO, 7, "ERR_OK", Some(&response));
    assert!(frame::decode_reply(&full, m::RPC_CM_CLUSTER_INFO, 7, m::read_cluster_info).is_ok());
    for cut in 0..full.len() {
        let r = frame::decode_reply(&full[..cut], m::RPC_CM_CLUSTER_INFO, 7, m::read_cluster_info);
        assert!(r.is_err(), "accepted a reply cut at {cut} of {}", full.len());
    }
}

#[test]
fn lengths_and_counts_beyond_the_bytes_are_refused_before_allocating() {
    let huge_list = cat(&[err("ERR_OK"), h("0f 0002 0b 7fffffff 00")]);
    let r = frame::decode_reply(
        &reply(m::RPC_CM_CLUSTER_INFO, 7, "ERR_OK", Some(&huge_list)),
        m::RPC_CM_CLUSTER_INFO,
        7,
        m::read_cluster_info,
    );
    assert!(matches!(r, Err(ReplyError::Body(DecodeError::TooLong { len: 0x7fffffff, .. }))), "{r:?}");
    let bad_string = h("7ffffff0 41");
    assert!(matches!(Reader::new(&bad_string).string(), Err(DecodeError::TooLong { .. })));
    let negative = h("ffffffff");
    assert!(matches!(Reader::new(&negative).binary(), Err(DecodeError::TooLong { len: -1, .. })));
    let huge_map = h("0d 0001 08 08 40000000 00");
    let mut r = Reader::new(&huge_map);
    let f = r.field().unwrap().unwrap();
    assert!(matches!(r.skip(f.ttype), Err(DecodeError::TooLong { .. })));
    // Nesting deeper than the skipper follows.
    let deep: Vec<u8> = std::iter::repeat_n(h("0c 0001"), 100).flatten().collect();
    assert!(matches!(Reader::new(&deep).skip(thrift::ttype::STRUCT), Err(DecodeError::TooDeep { .. })));
    let bad_type = h("11 0001 00");
    assert!(matches!(
        Reader::new(&bad_type).skip(thrift::ttype::STRUCT),
        Err(DecodeError::BadType { ttype: 0x11, .. })
    ));
}

#[test]
fn replies_not_in_this_protocol_fail_in_the_head() {
    let code = m::RPC_CM_CLUSTER_INFO;
    // Not an error-code string.
    let junk = cat(&[s("hello"), h("80010002"), s("RPC_CM_CLUSTER_INFO_ACK"), h("00000007")]);
    assert!(matches!(frame::decode_reply(&junk, code, 7, m::read_cluster_info), Err(ReplyError::Head(_))));
    // Non-strict message begin, wrong name, wrong sequence id, a CALL.
    for (begin, name, seqid) in [
        ("00000002", "RPC_CM_CLUSTER_INFO_ACK", "00000007"),
        ("80010002", "RPC_CM_LIST_APPS_ACK", "00000007"),
        ("80010002", "RPC_CM_CLUSTER_INFO_ACK", "00000008"),
        ("80010001", "RPC_CM_CLUSTER_INFO_ACK", "00000007"),
    ] {
        let bytes = cat(&[s("ERR_OK"), h(begin), s(name), h(seqid), h("0c 0000"), err("ERR_OK"), h("00 00")]);
        let r = frame::decode_reply(&bytes, code, 7, m::read_cluster_info);
        assert!(matches!(r, Err(ReplyError::Head(_))), "{begin} {name} {seqid}: {r:?}");
    }
    // A result without field 0 is a malformed body.
    let bytes = reply(code, 7, "ERR_OK", None);
    let bytes = cat(&[bytes, h("00")]);
    assert!(matches!(frame::decode_reply(&bytes, code, 7, m::read_cluster_info), Err(ReplyError::Body(_))));
}

#[test]
fn cluster_info_with_keys_and_values_of_different_lengths_is_refused() {
    let response = cat(&[err("ERR_OK"), h("0f 0002 0b 00000001"), s("a"), h("0f 0003 0b 00000000 00")]);
    let bytes = reply(m::RPC_CM_CLUSTER_INFO, 7, "ERR_OK", Some(&response));
    assert!(frame::decode_reply(&bytes, m::RPC_CM_CLUSTER_INFO, 7, m::read_cluster_info).is_err());
}

#[test]
fn meta_addresses_default_to_port_34601() {
    let metas = crate::parse_metas("m1, m2:34602,m1:34601,[::1]:5").unwrap();
    assert_eq!(metas, ["m1:34601", "m2:34602", "[::1]:5"]);
    for bad in ["", " , ", "m1:x", "m1:0", "m1:70000", "::1", "m1/x", ":34601"] {
        assert!(crate::parse_metas(bad).is_err(), "{bad}");
    }
}

#[test]
fn http_answers_give_the_leader() {
    let a = crate::http::parse(
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://10.0.0.2:34601/meta/cluster\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(a.status, 307);
    assert_eq!(crate::http::location_host(a.location.as_deref().unwrap()).as_deref(), Some("10.0.0.2:34601"));
    let body = "{\"meta_servers\":\"a:1,b:2\",\"primary_meta_server\":\"b:2\",\"zookeeper_root\":\"/p\"}";
    let chunked =
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let a = crate::http::parse(chunked.as_bytes()).unwrap();
    let e = crate::http::cluster_entries(&a.body).unwrap();
    assert!(e.contains(&("primary_meta_server".to_string(), "b:2".to_string())));
    assert!(crate::http::parse(b"RPC garbage").is_err());
}

fn node(status: i32, ip: &str, port: u16, host: Option<&str>) -> m::NodeInfo {
    m::NodeInfo {
        status,
        node: RpcAddress::new(ip.parse().unwrap(), port),
        hp_node: host.map(|h| thrift::HostPort { host: h.to_string(), port, host_type: 1 }),
    }
}

#[test]
fn start_recovery_sends_addresses_bools_and_host_ports_bare() {
    let nodes = [
        node(m::NS_ALIVE, "10.0.0.1", 34801, Some("replica1")),
        node(m::NS_UNALIVE, "10.0.0.9", 34801, Some("replica9")),
        node(m::NS_ALIVE, "10.0.0.2", 40960, Some("replica2")),
    ];
    let mut req = m::RecoveryRequest::alive(&nodes);
    assert_eq!(req.nodes.len(), 2, "the UNALIVE node is left out");
    req.skip_lost_partitions = true;
    let want = cat(&[
        // 1: list<rpc_address>: elements typed STRUCT, each a bare i64
        h("0f 0001 0c 00000002  0a000001 87f1 0001  0a000002 a000 0001"),
        h("02 0002 00  02 0003 01"), // skip_bad_nodes false, skip_lost_partitions true
        // 4: list<host_port>: elements typed STRUCT, each bare (port 40960 as i16 0xa000)
        h("0f 0004 0c 00000002"),
        s("replica1"),
        h("87f1 01"),
        s("replica2"),
        h("a000 01"),
        h("00"),
    ]);
    expect_call(m::RPC_CM_START_RECOVERY, m::start_recovery_request(&req), &hex(&want));
}

#[test]
fn start_recovery_leaves_out_host_ports_unless_every_node_has_one() {
    let nodes = [node(m::NS_ALIVE, "10.0.0.1", 34801, Some("replica1")), node(m::NS_ALIVE, "10.0.0.2", 34801, None)];
    let mut req = m::RecoveryRequest::alive(&nodes);
    req.skip_bad_nodes = true;
    expect_call(
        m::RPC_CM_START_RECOVERY,
        m::start_recovery_request(&req),
        "0f 0001 0c 00000002 0a000001 87f1 0001 0a000002 87f1 0001  02 0002 01  02 0003 00  00",
    );
    let empty = m::RecoveryRequest { nodes: Vec::new(), skip_bad_nodes: false, skip_lost_partitions: false };
    expect_call(
        m::RPC_CM_START_RECOVERY,
        m::start_recovery_request(&empty),
        "0f 0001 0c 00000000  02 0002 00  02 0003 00  00",
    );
}

#[test]
fn start_recovery_response_carries_the_error_and_the_hint() {
    let response = cat(&[err("ERR_OK"), h("0b 0002"), s("recovered 2 apps\n"), h("00")]);
    let r = decode(m::RPC_CM_START_RECOVERY, &response, m::read_start_recovery);
    assert_eq!(r, m::RecoveryReply { err: "ERR_OK".into(), hint: "recovered 2 apps\n".into() });
    assert!(r.is_ok());
    let response = cat(&[h("0b 0002"), s(""), err("ERR_SERVICE_ALREADY_RUNNING"), h("00")]);
    let r = decode(m::RPC_CM_START_RECOVERY, &response, m::read_start_recovery);
    assert_eq!((r.err.as_str(), r.hint.as_str(), r.is_ok()), ("ERR_SERVICE_ALREADY_RUNNING", "", false));
    let bytes = reply(m::RPC_CM_START_RECOVERY, 7, "ERR_OK", Some(&cat(&[h("0b 0002"), s("x"), h("00")])));
    let r = frame::decode_reply(&bytes, m::RPC_CM_START_RECOVERY, 7, m::read_start_recovery);
    assert!(matches!(r, Err(ReplyError::Body(_))), "a response without err is refused");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
