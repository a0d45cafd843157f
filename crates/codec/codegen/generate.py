#!/usr/bin/env python3
"""Generates crates/codec/src/generated.rs from crates/codec/spec/amqp-0-9-1-methods.tsv.

Regenerate with:  python3 crates/codec/codegen/generate.py
The test `generated::tests::matches_spec_table` checks the output against the TSV.
"""
import csv
import os
import subprocess
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "..", "spec", "amqp-0-9-1-methods.tsv")
OUT = os.path.join(HERE, "..", "src", "generated.rs")

RUST_TYPE = {
    "octet": "u8", "short": "u16", "long": "u32", "longlong": "u64",
    "shortstr": "ShortStr", "longstr": "Bytes", "bit": "bool", "table": "FieldTable",
    "timestamp": "u64",
}
READ = {
    "octet": "r.u8()", "short": "r.u16()", "long": "r.u32()", "longlong": "r.u64()",
    "shortstr": "r.shortstr()", "longstr": "r.longstr()", "table": "r.table()",
    "timestamp": "r.u64()",
}
# Bytes each field type takes in a method struct (ShortStr and Bytes are `bytes::Bytes`-sized).
SIZE = {
    "octet": 1, "short": 2, "long": 4, "longlong": 8, "bit": 1, "shortstr": 32, "longstr": 32,
    "table": 24, "timestamp": 8,
}
# Methods larger than basic.publish are boxed in `Method`: the enum is as large as its largest
# variant, and frames and commands carrying it are moved by value from the decoder through the
# assembler to the channel. Over 128 bytes each move is a `memcpy` call (136-byte `Method`,
# 144-byte `Frame`, 176-byte `Command`: ~33 calls per published message); at 80 they are
# register moves. The boxed ones (queue.bind, basic.deliver, connection.start-ok, …) are rare on
# the way in, and the way out encodes the structs themselves ([`MethodArgs`]), not `Method`.
BOX_OVER = 72


def struct_size(fields):
    return (sum(SIZE[t] for _, t in fields) + 7) // 8 * 8


WRITE = {
    "octet": "out.put_u8(self.{f})", "short": "out.put_u16(self.{f})",
    "long": "out.put_u32(self.{f})", "longlong": "out.put_u64(self.{f})",
    "shortstr": "put_shortstr(out, &self.{f})", "longstr": "put_longstr(out, &self.{f})",
    "table": "put_table(out, &self.{f})", "timestamp": "out.put_u64(self.{f})",
}


def camel(s):
    return "".join(p.capitalize() for p in s.replace("-", " ").split())


def field_ident(s):
    s = s.replace("-", "_")
    return "kind" if s == "type" else s


def main():
    methods = OrderedDict()
    with open(SPEC, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            key = (row["class_name"], row["method_name"])
            m = methods.setdefault(key, {
                "class_name": row["class_name"], "class_id": int(row["class_id"]),
                "method_name": row["method_name"], "method_id": int(row["method_id"]),
                "sync": row["synchronous"] == "yes", "content": row["content"] == "yes",
                "responses": row["response_methods"], "fields": [],
            })
            if row["field_name"]:
                m["fields"].append((row["field_name"], row["primitive_type"]))

    o = []
    w = o.append
    w("//! AMQP 0-9-1 methods (with RabbitMQ's extensions), generated from")
    w("//! `spec/amqp-0-9-1-methods.tsv` by `codegen/generate.py`. Do not edit by hand:")
    w("//! run `python3 crates/codec/codegen/generate.py`.")
    w("")
    w("#![allow(missing_docs)]")
    w("")
    w("use bytes::{BufMut, Bytes, BytesMut};")
    w("")
    w("use crate::error::SyntaxReason;")
    w("use crate::types::{FieldTable, Reader, ShortStr, put_longstr, put_shortstr, put_table};")
    w("")
    w("/// A method's arguments as they go on the wire: implemented by every method struct and by")
    w("/// [`Method`], so a sender encodes a struct without building (or boxing into) a `Method`.")
    w("pub trait MethodArgs {")
    w("    /// Class id of the method.")
    w("    fn class_id(&self) -> u16;")
    w("    /// Method id within its class.")
    w("    fn method_id(&self) -> u16;")
    w("    /// Writes the arguments (after the class and method ids).")
    w("    fn encode_args(&self, out: &mut BytesMut);")
    w("}")
    w("")
    for m in methods.values():
        name = camel(m["class_name"]) + camel(m["method_name"])
        m["name"] = name
        w(f"/// `{m['class_name']}.{m['method_name']}` ({m['class_id']}, {m['method_id']}).")
        w("#[derive(Debug, Clone, PartialEq, Default)]")
        w(f"pub struct {name} {{")
        for fname, ptype in m["fields"]:
            w(f"    pub {field_ident(fname)}: {RUST_TYPE[ptype]},")
        w("}")
        w("")
        w(f"impl {name} {{")
        w("    /// Class id.")
        w(f"    pub const CLASS_ID: u16 = {m['class_id']};")
        w("    /// Method id.")
        w(f"    pub const METHOD_ID: u16 = {m['method_id']};")
        rvar = "r" if m["fields"] else "_r"
        w(f"    fn decode_fields({rvar}: &mut Reader<'_>) -> Result<Self, SyntaxReason> {{")
        fields = m["fields"]
        i = 0
        lines = []
        while i < len(fields):
            fname, ptype = fields[i]
            if ptype == "bit":
                run = []
                while i < len(fields) and fields[i][1] == "bit":
                    run.append(fields[i][0])
                    i += 1
                lines.append("        let bits = r.u8()?;")
                for b, bn in enumerate(run):
                    lines.append(f"        let {field_ident(bn)} = bits & {1 << b} != 0;")
            else:
                lines.append(f"        let {field_ident(fname)} = {READ[ptype]}?;")
                i += 1
        o.extend(lines)
        w(f"        Ok({name} {{ {', '.join(field_ident(f) for f, _ in fields)} }})")
        w("    }")
        ovar = "out" if m["fields"] else "_out"
        w(f"    fn encode_fields(&self, {ovar}: &mut BytesMut) {{")
        i = 0
        while i < len(fields):
            fname, ptype = fields[i]
            if ptype == "bit":
                parts = []
                b = 0
                while i < len(fields) and fields[i][1] == "bit":
                    parts.append(f"(self.{field_ident(fields[i][0])} as u8) << {b}")
                    b += 1
                    i += 1
                w(f"        out.put_u8({' | '.join(parts)});")
            else:
                w("        " + WRITE[ptype].format(f=field_ident(fname)) + ";")
                i += 1
        w("    }")
        w("}")
        w("")
        m["boxed"] = struct_size(fields) > BOX_OVER
        w(f"impl MethodArgs for {name} {{")
        w("    fn class_id(&self) -> u16 {")
        w(f"        {m['class_id']}")
        w("    }")
        w("    fn method_id(&self) -> u16 {")
        w(f"        {m['method_id']}")
        w("    }")
        w(f"    fn encode_args(&self, {ovar}: &mut BytesMut) {{")
        w(f"        self.encode_fields({ovar})")
        w("    }")
        w("}")
        w("")
        w(f"impl From<{name}> for Method {{")
        w(f"    fn from(m: {name}) -> Method {{")
        w(f"        Method::{name}(Box::new(m))" if m["boxed"] else f"        Method::{name}(m)")
        w("    }")
        w("}")
        w("")

    w("/// Every AMQP method, one variant per method; those larger than `basic.publish` boxed.")
    w("#[derive(Debug, Clone, PartialEq)]")
    w("pub enum Method {")
    for m in methods.values():
        w(f"    {m['name']}(Box<{m['name']}>)," if m["boxed"] else f"    {m['name']}({m['name']}),")
    w("}")
    w("")
    w("impl Method {")
    w("    /// Class id of the method.")
    w("    pub fn class_id(&self) -> u16 {")
    w("        match self {")
    for m in methods.values():
        w(f"            Method::{m['name']}(_) => {m['class_id']},")
    w("        }")
    w("    }")
    w("")
    w("    /// Method id within its class.")
    w("    pub fn method_id(&self) -> u16 {")
    w("        match self {")
    for m in methods.values():
        w(f"            Method::{m['name']}(_) => {m['method_id']},")
    w("        }")
    w("    }")
    w("")
    w("    /// `class.method` as the spec spells it (`basic.publish`).")
    w("    pub fn name(&self) -> &'static str {")
    w("        method_name(self.class_id(), self.method_id()).unwrap_or(\"unknown\")")
    w("    }")
    w("")
    w("    /// Whether a content header and body frames follow this method.")
    w("    pub fn has_content(&self) -> bool {")
    content = [m for m in methods.values() if m["content"]]
    w("        matches!(self, " + " | ".join(f"Method::{m['name']}(_)" for m in content) + ")")
    w("    }")
    w("")
    w("    /// Decodes a method frame's payload: class id, method id, arguments.")
    w("    pub fn decode(payload: &Bytes) -> Result<Method, crate::CodecError> {")
    w("        Self::decode_reader(&mut Reader::new(payload))")
    w("    }")
    w("")
    w("    /// Decodes a method frame's payload from a reader (which must hold exactly the payload).")
    w("    pub(crate) fn decode_reader(r: &mut Reader<'_>) -> Result<Method, crate::CodecError> {")
    w("        let syntax = |class_id, method_id| move |reason| crate::CodecError::Syntax { class_id, method_id, reason };")
    w("        let class_id = r.u16().map_err(syntax(0, 0))?;")
    w("        let method_id = r.u16().map_err(syntax(class_id, 0))?;")
    w("        let m = match (class_id, method_id) {")
    for m in methods.values():
        wrap = f"|m| Method::{m['name']}(Box::new(m))" if m["boxed"] else f"Method::{m['name']}"
        w(f"            ({m['class_id']}, {m['method_id']}) => {m['name']}::decode_fields(r).map({wrap}),")
    w("            _ => return Err(crate::CodecError::UnknownMethod { class_id, method_id }),")
    w("        }")
    w("        .map_err(syntax(class_id, method_id))?;")
    w("        r.finish().map_err(syntax(class_id, method_id))?;")
    w("        Ok(m)")
    w("    }")
    w("")
    w("    /// Encodes class id, method id and arguments.")
    w("    pub fn encode(&self, out: &mut BytesMut) {")
    w("        out.put_u16(self.class_id());")
    w("        out.put_u16(self.method_id());")
    w("        self.encode_args(out);")
    w("    }")
    w("}")
    w("")
    w("impl MethodArgs for Method {")
    w("    fn class_id(&self) -> u16 {")
    w("        Method::class_id(self)")
    w("    }")
    w("    fn method_id(&self) -> u16 {")
    w("        Method::method_id(self)")
    w("    }")
    w("    fn encode_args(&self, out: &mut BytesMut) {")
    w("        match self {")
    for m in methods.values():
        w(f"            Method::{m['name']}(m) => m.encode_fields(out),")
    w("        }")
    w("    }")
    w("}")
    w("")
    w("/// `class.method` name for a pair of ids.")
    w("pub fn method_name(class_id: u16, method_id: u16) -> Option<&'static str> {")
    w("    METHOD_TABLE")
    w("        .iter()")
    w("        .find(|m| m.class_id == class_id && m.method_id == method_id)")
    w("        .map(|m| m.full_name)")
    w("}")
    w("")
    w("/// Static description of a method, as in the spec table.")
    w("#[derive(Debug, Clone, Copy)]")
    w("pub struct MethodSpec {")
    w("    pub class_name: &'static str,")
    w("    pub class_id: u16,")
    w("    pub method_name: &'static str,")
    w("    pub method_id: u16,")
    w("    pub full_name: &'static str,")
    w("    pub synchronous: bool,")
    w("    pub content: bool,")
    w("    pub responses: &'static str,")
    w("    /// (field name, primitive type) in wire order.")
    w("    pub fields: &'static [(&'static str, &'static str)],")
    w("}")
    w("")
    w("/// Every method, in class then method order.")
    w("pub const METHOD_TABLE: &[MethodSpec] = &[")
    for m in methods.values():
        fl = ", ".join(f'("{f}", "{t}")' for f, t in m["fields"])
        w("    MethodSpec {")
        w(f"        class_name: \"{m['class_name']}\",")
        w(f"        class_id: {m['class_id']},")
        w(f"        method_name: \"{m['method_name']}\",")
        w(f"        method_id: {m['method_id']},")
        w(f"        full_name: \"{m['class_name']}.{m['method_name']}\",")
        w(f"        synchronous: {'true' if m['sync'] else 'false'},")
        w(f"        content: {'true' if m['content'] else 'false'},")
        w(f"        responses: \"{m['responses']}\",")
        w(f"        fields: &[{fl}],")
        w("    },")
    w("];")
    w("")
    with open(OUT, "w") as f:
        f.write("\n".join(o))
    subprocess.run(["rustfmt", "--edition", "2024", OUT], check=False)
    print(f"wrote {OUT}: {len(methods)} methods")


if __name__ == "__main__":
    main()
