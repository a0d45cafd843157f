//! `generated::METHOD_TABLE` and the `Method` enum against `spec/amqp-0-9-1-methods.tsv`, row by
//! row: ids, names, synchronous/content flags, responses, and field names and primitive types in
//! wire order. Also checks that the default encoding of every method has exactly the length the
//! TSV's primitive types predict (with bit runs packed into octets).

use bytes::{Bytes, BytesMut};
use warren_codec::Method;
use warren_codec::generated::{METHOD_TABLE, MethodSpec, method_name};
use warren_codec::methods::*;

const TSV: &str = include_str!("../spec/amqp-0-9-1-methods.tsv");

const HEADER: &str = "class_name\tclass_id\tmethod_name\tmethod_id\tsynchronous\tresponse_methods\tcontent\t\
                      field_index\tfield_name\tdomain\tprimitive_type";

/// One method as the TSV describes it.
#[derive(Debug, PartialEq)]
struct TsvMethod {
    class_name: String,
    class_id: u16,
    method_name: String,
    method_id: u16,
    synchronous: bool,
    responses: String,
    content: bool,
    fields: Vec<(String, String)>,
}

fn yes_no(s: &str) -> bool {
    match s {
        "yes" => true,
        "no" => false,
        other => panic!("not yes/no: {other:?}"),
    }
}

fn parse_tsv() -> Vec<TsvMethod> {
    let mut lines = TSV.lines();
    assert_eq!(lines.next(), Some(HEADER));
    let mut out: Vec<TsvMethod> = Vec::new();
    let mut rows = 0;
    for line in lines {
        rows += 1;
        let c: Vec<&str> = line.split('\t').collect();
        assert_eq!(c.len(), 11, "row {rows}: {line:?}");
        let class_id: u16 = c[1].parse().unwrap();
        let method_id: u16 = c[3].parse().unwrap();
        let is_new = out
            .last()
            .is_none_or(|m| (m.class_id, m.method_id) != (class_id, method_id));
        if is_new {
            out.push(TsvMethod {
                class_name: c[0].to_owned(),
                class_id,
                method_name: c[2].to_owned(),
                method_id,
                synchronous: yes_no(c[4]),
                responses: c[5].to_owned(),
                content: yes_no(c[6]),
                fields: Vec::new(),
            });
        }
        let m = out.last_mut().unwrap();
        // Method-level columns repeat identically on every row of a method.
        assert_eq!(
            (c[0], c[2], c[5]),
            (&*m.class_name, &*m.method_name, &*m.responses)
        );
        assert_eq!((yes_no(c[4]), yes_no(c[6])), (m.synchronous, m.content));
        if c[7].is_empty() {
            assert!(c[8].is_empty() && c[9].is_empty() && c[10].is_empty());
            assert!(m.fields.is_empty(), "field-less row after field rows");
        } else {
            assert_eq!(
                c[7].parse::<usize>().unwrap(),
                m.fields.len(),
                "field_index order"
            );
            m.fields.push((c[8].to_owned(), c[10].to_owned()));
        }
    }
    assert_eq!(
        rows, 167,
        "rows in the TSV (README: 148 field rows + 19 field-less)"
    );
    out
}

#[test]
fn method_table_matches_tsv_row_by_row() {
    let tsv = parse_tsv();
    assert_eq!(tsv.len(), 66);
    assert_eq!(METHOD_TABLE.len(), tsv.len());
    for (spec, want) in METHOD_TABLE.iter().zip(&tsv) {
        let MethodSpec {
            class_name,
            class_id,
            method_name,
            method_id,
            full_name,
            synchronous,
            content,
            responses,
            fields,
        } = *spec;
        let what = format!("{}.{}", want.class_name, want.method_name);
        assert_eq!(class_name, want.class_name, "{what}");
        assert_eq!(class_id, want.class_id, "{what}");
        assert_eq!(method_name, want.method_name, "{what}");
        assert_eq!(method_id, want.method_id, "{what}");
        assert_eq!(full_name, what);
        assert_eq!(synchronous, want.synchronous, "{what} synchronous");
        assert_eq!(content, want.content, "{what} content");
        assert_eq!(responses, want.responses, "{what} responses");
        let got: Vec<(String, String)> = fields
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(got, want.fields, "{what} fields");
        assert_eq!(method_name_of(class_id, method_id), Some(full_name));
    }
}

fn method_name_of(class_id: u16, method_id: u16) -> Option<&'static str> {
    method_name(class_id, method_id)
}

#[test]
fn tsv_facts_from_the_readme() {
    let tsv = parse_tsv();
    let field_rows: usize = tsv.iter().map(|m| m.fields.len()).sum();
    assert_eq!(field_rows, 148);
    assert_eq!(tsv.iter().filter(|m| m.fields.is_empty()).count(), 19);
    let per_class = |name: &str| tsv.iter().filter(|m| m.class_name == name).count();
    let counts: Vec<usize> = [
        "connection",
        "channel",
        "access",
        "exchange",
        "queue",
        "basic",
        "confirm",
        "tx",
    ]
    .iter()
    .map(|c| per_class(c))
    .collect();
    assert_eq!(counts, [14, 6, 2, 8, 10, 18, 2, 6]);
    let content: Vec<String> = tsv
        .iter()
        .filter(|m| m.content)
        .map(|m| format!("{}.{}", m.class_name, m.method_name))
        .collect();
    assert_eq!(
        content,
        ["basic.publish", "basic.return", "basic.deliver", "basic.get-ok"]
    );
    for m in &tsv {
        assert_eq!(
            m.synchronous,
            !m.responses.is_empty(),
            "{}.{}",
            m.class_name,
            m.method_name
        );
    }
    let unbind_ok = tsv
        .iter()
        .find(|m| m.class_name == "exchange" && m.method_name == "unbind-ok");
    assert_eq!(unbind_ok.map(|m| m.method_id), Some(51));
}

/// Every method, default-constructed, in TSV order.
fn all_default_methods() -> Vec<Method> {
    macro_rules! all {
        ($($t:ident),* $(,)?) => { vec![$(Method::from(<$t>::default())),*] };
    }
    all![
        ConnectionStart,
        ConnectionStartOk,
        ConnectionSecure,
        ConnectionSecureOk,
        ConnectionTune,
        ConnectionTuneOk,
        ConnectionOpen,
        ConnectionOpenOk,
        ConnectionClose,
        ConnectionCloseOk,
        ConnectionBlocked,
        ConnectionUnblocked,
        ConnectionUpdateSecret,
        ConnectionUpdateSecretOk,
        ChannelOpen,
        ChannelOpenOk,
        ChannelFlow,
        ChannelFlowOk,
        ChannelClose,
        ChannelCloseOk,
        AccessRequest,
        AccessRequestOk,
        ExchangeDeclare,
        ExchangeDeclareOk,
        ExchangeDelete,
        ExchangeDeleteOk,
        ExchangeBind,
        ExchangeBindOk,
        ExchangeUnbind,
        ExchangeUnbindOk,
        QueueDeclare,
        QueueDeclareOk,
        QueueBind,
        QueueBindOk,
        QueuePurge,
        QueuePurgeOk,
        QueueDelete,
        QueueDeleteOk,
        QueueUnbind,
        QueueUnbindOk,
        BasicQos,
        BasicQosOk,
        BasicConsume,
        BasicConsumeOk,
        BasicCancel,
        BasicCancelOk,
        BasicPublish,
        BasicReturn,
        BasicDeliver,
        BasicGet,
        BasicGetOk,
        BasicGetEmpty,
        BasicAck,
        BasicReject,
        BasicRecoverAsync,
        BasicRecover,
        BasicRecoverOk,
        BasicNack,
        ConfirmSelect,
        ConfirmSelectOk,
        TxSelect,
        TxSelectOk,
        TxCommit,
        TxCommitOk,
        TxRollback,
        TxRollbackOk,
    ]
}

/// Encoded length of a method's arguments with every field zero/empty, from the TSV alone.
fn default_args_len(fields: &[(String, String)]) -> usize {
    let mut len = 0;
    let mut bits_in_octet = 0;
    for (_, ty) in fields {
        if ty == "bit" {
            if bits_in_octet == 0 || bits_in_octet == 8 {
                len += 1;
                bits_in_octet = 0;
            }
            bits_in_octet += 1;
            continue;
        }
        bits_in_octet = 0;
        len += match ty.as_str() {
            "octet" => 1,
            "short" => 2,
            "long" => 4,
            "longlong" | "timestamp" => 8,
            "shortstr" => 1,
            "longstr" | "table" => 4,
            other => panic!("unknown primitive type {other}"),
        };
    }
    len
}

#[test]
fn every_method_variant_agrees_with_the_tsv() {
    let tsv = parse_tsv();
    let methods = all_default_methods();
    assert_eq!(methods.len(), tsv.len());
    for (m, want) in methods.iter().zip(&tsv) {
        let what = format!("{}.{}", want.class_name, want.method_name);
        assert_eq!(
            (m.class_id(), m.method_id()),
            (want.class_id, want.method_id),
            "{what}"
        );
        assert_eq!(m.name(), what);
        assert_eq!(m.has_content(), want.content, "{what}");

        let mut out = BytesMut::new();
        m.encode(&mut out);
        assert_eq!(
            &out[..4],
            &[
                (want.class_id >> 8) as u8,
                want.class_id as u8,
                (want.method_id >> 8) as u8,
                want.method_id as u8
            ]
        );
        assert_eq!(
            out.len() - 4,
            default_args_len(&want.fields),
            "{what}: default encoding length"
        );
        assert!(
            out[4..].iter().all(|&b| b == 0),
            "{what}: default fields are all zero octets"
        );
        let decoded = Method::decode(&Bytes::from(out.to_vec())).unwrap();
        assert_eq!(&decoded, m, "{what}");
    }
}

#[test]
fn each_bit_field_sets_its_own_bit_in_tsv_order() {
    // For every method, decode an all-zero payload with one bit octet set to 1 << k and check that
    // exactly the k-th bit field of that run comes back true (via the Debug output, by name).
    let tsv = parse_tsv();
    for want in &tsv {
        let what = format!("{}.{}", want.class_name, want.method_name);
        // Positions (offset in the arguments, bit index) of every bit field.
        let mut offset = 0;
        let mut bit = 8;
        let mut bit_fields = Vec::new();
        for (name, ty) in &want.fields {
            if ty == "bit" {
                if bit == 8 {
                    bit = 0;
                    offset += 1;
                }
                bit_fields.push((name.clone(), offset - 1, bit));
                bit += 1;
                continue;
            }
            bit = 8;
            offset += default_args_len(&[(name.clone(), ty.clone())]);
        }
        for (name, at, k) in &bit_fields {
            let mut payload = vec![
                (want.class_id >> 8) as u8,
                want.class_id as u8,
                0,
                want.method_id as u8,
            ];
            payload.resize(4 + offset, 0);
            payload[4 + at] = 1 << k;
            let m = Method::decode(&Bytes::from(payload)).unwrap_or_else(|e| panic!("{what}: {e}"));
            let dbg = format!("{m:?}");
            let ident = match name.as_str() {
                "type" => "kind".to_owned(),
                n => n.replace('-', "_"),
            };
            assert!(
                dbg.contains(&format!("{ident}: true")),
                "{what}: bit {k} should be {name}: {dbg}"
            );
            assert_eq!(dbg.matches(": true").count(), 1, "{what}: only {name} set: {dbg}");
        }
    }
}
