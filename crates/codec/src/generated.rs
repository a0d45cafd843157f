//! AMQP 0-9-1 methods (with RabbitMQ's extensions), generated from
//! `spec/amqp-0-9-1-methods.tsv` by `codegen/generate.py`. Do not edit by hand:
//! run `python3 crates/codec/codegen/generate.py`.

#![allow(missing_docs)]

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::SyntaxReason;
use crate::types::{FieldTable, Reader, ShortStr, put_longstr, put_shortstr, put_table};

/// A method's arguments as they go on the wire: implemented by every method struct and by
/// [`Method`], so a sender encodes a struct without building (or boxing into) a `Method`.
pub trait MethodArgs {
    /// Class id of the method.
    fn class_id(&self) -> u16;
    /// Method id within its class.
    fn method_id(&self) -> u16;
    /// Writes the arguments (after the class and method ids).
    fn encode_args(&self, out: &mut BytesMut);
}

/// `connection.start` (10, 10).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionStart {
    pub version_major: u8,
    pub version_minor: u8,
    pub server_properties: FieldTable,
    pub mechanisms: Bytes,
    pub locales: Bytes,
}

impl ConnectionStart {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 10;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let version_major = r.u8()?;
        let version_minor = r.u8()?;
        let server_properties = r.table()?;
        let mechanisms = r.longstr()?;
        let locales = r.longstr()?;
        Ok(ConnectionStart {
            version_major,
            version_minor,
            server_properties,
            mechanisms,
            locales,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u8(self.version_major);
        out.put_u8(self.version_minor);
        put_table(out, &self.server_properties);
        put_longstr(out, &self.mechanisms);
        put_longstr(out, &self.locales);
    }
}

impl MethodArgs for ConnectionStart {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        10
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConnectionStart> for Method {
    fn from(m: ConnectionStart) -> Method {
        Method::ConnectionStart(Box::new(m))
    }
}

/// `connection.start-ok` (10, 11).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionStartOk {
    pub client_properties: FieldTable,
    pub mechanism: ShortStr,
    pub response: Bytes,
    pub locale: ShortStr,
}

impl ConnectionStartOk {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 11;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let client_properties = r.table()?;
        let mechanism = r.shortstr()?;
        let response = r.longstr()?;
        let locale = r.shortstr()?;
        Ok(ConnectionStartOk {
            client_properties,
            mechanism,
            response,
            locale,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_table(out, &self.client_properties);
        put_shortstr(out, &self.mechanism);
        put_longstr(out, &self.response);
        put_shortstr(out, &self.locale);
    }
}

impl MethodArgs for ConnectionStartOk {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        11
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConnectionStartOk> for Method {
    fn from(m: ConnectionStartOk) -> Method {
        Method::ConnectionStartOk(Box::new(m))
    }
}

/// `connection.secure` (10, 20).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionSecure {
    pub challenge: Bytes,
}

impl ConnectionSecure {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 20;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let challenge = r.longstr()?;
        Ok(ConnectionSecure { challenge })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_longstr(out, &self.challenge);
    }
}

impl MethodArgs for ConnectionSecure {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        20
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConnectionSecure> for Method {
    fn from(m: ConnectionSecure) -> Method {
        Method::ConnectionSecure(m)
    }
}

/// `connection.secure-ok` (10, 21).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionSecureOk {
    pub response: Bytes,
}

impl ConnectionSecureOk {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 21;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let response = r.longstr()?;
        Ok(ConnectionSecureOk { response })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_longstr(out, &self.response);
    }
}

impl MethodArgs for ConnectionSecureOk {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        21
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConnectionSecureOk> for Method {
    fn from(m: ConnectionSecureOk) -> Method {
        Method::ConnectionSecureOk(m)
    }
}

/// `connection.tune` (10, 30).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionTune {
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
}

impl ConnectionTune {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 30;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let channel_max = r.u16()?;
        let frame_max = r.u32()?;
        let heartbeat = r.u16()?;
        Ok(ConnectionTune {
            channel_max,
            frame_max,
            heartbeat,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.channel_max);
        out.put_u32(self.frame_max);
        out.put_u16(self.heartbeat);
    }
}

impl MethodArgs for ConnectionTune {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        30
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConnectionTune> for Method {
    fn from(m: ConnectionTune) -> Method {
        Method::ConnectionTune(m)
    }
}

/// `connection.tune-ok` (10, 31).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionTuneOk {
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
}

impl ConnectionTuneOk {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 31;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let channel_max = r.u16()?;
        let frame_max = r.u32()?;
        let heartbeat = r.u16()?;
        Ok(ConnectionTuneOk {
            channel_max,
            frame_max,
            heartbeat,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.channel_max);
        out.put_u32(self.frame_max);
        out.put_u16(self.heartbeat);
    }
}

impl MethodArgs for ConnectionTuneOk {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        31
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConnectionTuneOk> for Method {
    fn from(m: ConnectionTuneOk) -> Method {
        Method::ConnectionTuneOk(m)
    }
}

/// `connection.open` (10, 40).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionOpen {
    pub virtual_host: ShortStr,
    pub capabilities: ShortStr,
    pub insist: bool,
}

impl ConnectionOpen {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 40;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let virtual_host = r.shortstr()?;
        let capabilities = r.shortstr()?;
        let bits = r.u8()?;
        let insist = bits & 1 != 0;
        Ok(ConnectionOpen {
            virtual_host,
            capabilities,
            insist,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_shortstr(out, &self.virtual_host);
        put_shortstr(out, &self.capabilities);
        out.put_u8((self.insist as u8) << 0);
    }
}

impl MethodArgs for ConnectionOpen {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        40
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConnectionOpen> for Method {
    fn from(m: ConnectionOpen) -> Method {
        Method::ConnectionOpen(m)
    }
}

/// `connection.open-ok` (10, 41).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionOpenOk {
    pub known_hosts: ShortStr,
}

impl ConnectionOpenOk {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 41;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let known_hosts = r.shortstr()?;
        Ok(ConnectionOpenOk { known_hosts })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_shortstr(out, &self.known_hosts);
    }
}

impl MethodArgs for ConnectionOpenOk {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        41
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConnectionOpenOk> for Method {
    fn from(m: ConnectionOpenOk) -> Method {
        Method::ConnectionOpenOk(m)
    }
}

/// `connection.close` (10, 50).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionClose {
    pub reply_code: u16,
    pub reply_text: ShortStr,
    pub class_id: u16,
    pub method_id: u16,
}

impl ConnectionClose {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 50;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let reply_code = r.u16()?;
        let reply_text = r.shortstr()?;
        let class_id = r.u16()?;
        let method_id = r.u16()?;
        Ok(ConnectionClose {
            reply_code,
            reply_text,
            class_id,
            method_id,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.reply_code);
        put_shortstr(out, &self.reply_text);
        out.put_u16(self.class_id);
        out.put_u16(self.method_id);
    }
}

impl MethodArgs for ConnectionClose {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        50
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConnectionClose> for Method {
    fn from(m: ConnectionClose) -> Method {
        Method::ConnectionClose(m)
    }
}

/// `connection.close-ok` (10, 51).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionCloseOk {}

impl ConnectionCloseOk {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 51;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(ConnectionCloseOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for ConnectionCloseOk {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        51
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<ConnectionCloseOk> for Method {
    fn from(m: ConnectionCloseOk) -> Method {
        Method::ConnectionCloseOk(m)
    }
}

/// `connection.blocked` (10, 60).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionBlocked {
    pub reason: ShortStr,
}

impl ConnectionBlocked {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 60;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let reason = r.shortstr()?;
        Ok(ConnectionBlocked { reason })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_shortstr(out, &self.reason);
    }
}

impl MethodArgs for ConnectionBlocked {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        60
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConnectionBlocked> for Method {
    fn from(m: ConnectionBlocked) -> Method {
        Method::ConnectionBlocked(m)
    }
}

/// `connection.unblocked` (10, 61).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionUnblocked {}

impl ConnectionUnblocked {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 61;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(ConnectionUnblocked {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for ConnectionUnblocked {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        61
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<ConnectionUnblocked> for Method {
    fn from(m: ConnectionUnblocked) -> Method {
        Method::ConnectionUnblocked(m)
    }
}

/// `connection.update-secret` (10, 70).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionUpdateSecret {
    pub new_secret: Bytes,
    pub reason: ShortStr,
}

impl ConnectionUpdateSecret {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 70;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let new_secret = r.longstr()?;
        let reason = r.shortstr()?;
        Ok(ConnectionUpdateSecret { new_secret, reason })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_longstr(out, &self.new_secret);
        put_shortstr(out, &self.reason);
    }
}

impl MethodArgs for ConnectionUpdateSecret {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        70
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConnectionUpdateSecret> for Method {
    fn from(m: ConnectionUpdateSecret) -> Method {
        Method::ConnectionUpdateSecret(m)
    }
}

/// `connection.update-secret-ok` (10, 71).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionUpdateSecretOk {}

impl ConnectionUpdateSecretOk {
    /// Class id.
    pub const CLASS_ID: u16 = 10;
    /// Method id.
    pub const METHOD_ID: u16 = 71;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(ConnectionUpdateSecretOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for ConnectionUpdateSecretOk {
    fn class_id(&self) -> u16 {
        10
    }
    fn method_id(&self) -> u16 {
        71
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<ConnectionUpdateSecretOk> for Method {
    fn from(m: ConnectionUpdateSecretOk) -> Method {
        Method::ConnectionUpdateSecretOk(m)
    }
}

/// `channel.open` (20, 10).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChannelOpen {
    pub out_of_band: ShortStr,
}

impl ChannelOpen {
    /// Class id.
    pub const CLASS_ID: u16 = 20;
    /// Method id.
    pub const METHOD_ID: u16 = 10;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let out_of_band = r.shortstr()?;
        Ok(ChannelOpen { out_of_band })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_shortstr(out, &self.out_of_band);
    }
}

impl MethodArgs for ChannelOpen {
    fn class_id(&self) -> u16 {
        20
    }
    fn method_id(&self) -> u16 {
        10
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ChannelOpen> for Method {
    fn from(m: ChannelOpen) -> Method {
        Method::ChannelOpen(m)
    }
}

/// `channel.open-ok` (20, 11).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChannelOpenOk {
    pub channel_id: Bytes,
}

impl ChannelOpenOk {
    /// Class id.
    pub const CLASS_ID: u16 = 20;
    /// Method id.
    pub const METHOD_ID: u16 = 11;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let channel_id = r.longstr()?;
        Ok(ChannelOpenOk { channel_id })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_longstr(out, &self.channel_id);
    }
}

impl MethodArgs for ChannelOpenOk {
    fn class_id(&self) -> u16 {
        20
    }
    fn method_id(&self) -> u16 {
        11
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ChannelOpenOk> for Method {
    fn from(m: ChannelOpenOk) -> Method {
        Method::ChannelOpenOk(m)
    }
}

/// `channel.flow` (20, 20).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChannelFlow {
    pub active: bool,
}

impl ChannelFlow {
    /// Class id.
    pub const CLASS_ID: u16 = 20;
    /// Method id.
    pub const METHOD_ID: u16 = 20;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let bits = r.u8()?;
        let active = bits & 1 != 0;
        Ok(ChannelFlow { active })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u8((self.active as u8) << 0);
    }
}

impl MethodArgs for ChannelFlow {
    fn class_id(&self) -> u16 {
        20
    }
    fn method_id(&self) -> u16 {
        20
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ChannelFlow> for Method {
    fn from(m: ChannelFlow) -> Method {
        Method::ChannelFlow(m)
    }
}

/// `channel.flow-ok` (20, 21).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChannelFlowOk {
    pub active: bool,
}

impl ChannelFlowOk {
    /// Class id.
    pub const CLASS_ID: u16 = 20;
    /// Method id.
    pub const METHOD_ID: u16 = 21;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let bits = r.u8()?;
        let active = bits & 1 != 0;
        Ok(ChannelFlowOk { active })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u8((self.active as u8) << 0);
    }
}

impl MethodArgs for ChannelFlowOk {
    fn class_id(&self) -> u16 {
        20
    }
    fn method_id(&self) -> u16 {
        21
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ChannelFlowOk> for Method {
    fn from(m: ChannelFlowOk) -> Method {
        Method::ChannelFlowOk(m)
    }
}

/// `channel.close` (20, 40).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChannelClose {
    pub reply_code: u16,
    pub reply_text: ShortStr,
    pub class_id: u16,
    pub method_id: u16,
}

impl ChannelClose {
    /// Class id.
    pub const CLASS_ID: u16 = 20;
    /// Method id.
    pub const METHOD_ID: u16 = 40;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let reply_code = r.u16()?;
        let reply_text = r.shortstr()?;
        let class_id = r.u16()?;
        let method_id = r.u16()?;
        Ok(ChannelClose {
            reply_code,
            reply_text,
            class_id,
            method_id,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.reply_code);
        put_shortstr(out, &self.reply_text);
        out.put_u16(self.class_id);
        out.put_u16(self.method_id);
    }
}

impl MethodArgs for ChannelClose {
    fn class_id(&self) -> u16 {
        20
    }
    fn method_id(&self) -> u16 {
        40
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ChannelClose> for Method {
    fn from(m: ChannelClose) -> Method {
        Method::ChannelClose(m)
    }
}

/// `channel.close-ok` (20, 41).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChannelCloseOk {}

impl ChannelCloseOk {
    /// Class id.
    pub const CLASS_ID: u16 = 20;
    /// Method id.
    pub const METHOD_ID: u16 = 41;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(ChannelCloseOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for ChannelCloseOk {
    fn class_id(&self) -> u16 {
        20
    }
    fn method_id(&self) -> u16 {
        41
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<ChannelCloseOk> for Method {
    fn from(m: ChannelCloseOk) -> Method {
        Method::ChannelCloseOk(m)
    }
}

/// `access.request` (30, 10).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessRequest {
    pub realm: ShortStr,
    pub exclusive: bool,
    pub passive: bool,
    pub active: bool,
    pub write: bool,
    pub read: bool,
}

impl AccessRequest {
    /// Class id.
    pub const CLASS_ID: u16 = 30;
    /// Method id.
    pub const METHOD_ID: u16 = 10;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let realm = r.shortstr()?;
        let bits = r.u8()?;
        let exclusive = bits & 1 != 0;
        let passive = bits & 2 != 0;
        let active = bits & 4 != 0;
        let write = bits & 8 != 0;
        let read = bits & 16 != 0;
        Ok(AccessRequest {
            realm,
            exclusive,
            passive,
            active,
            write,
            read,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_shortstr(out, &self.realm);
        out.put_u8(
            (self.exclusive as u8) << 0
                | (self.passive as u8) << 1
                | (self.active as u8) << 2
                | (self.write as u8) << 3
                | (self.read as u8) << 4,
        );
    }
}

impl MethodArgs for AccessRequest {
    fn class_id(&self) -> u16 {
        30
    }
    fn method_id(&self) -> u16 {
        10
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<AccessRequest> for Method {
    fn from(m: AccessRequest) -> Method {
        Method::AccessRequest(m)
    }
}

/// `access.request-ok` (30, 11).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessRequestOk {
    pub ticket: u16,
}

impl AccessRequestOk {
    /// Class id.
    pub const CLASS_ID: u16 = 30;
    /// Method id.
    pub const METHOD_ID: u16 = 11;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        Ok(AccessRequestOk { ticket })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
    }
}

impl MethodArgs for AccessRequestOk {
    fn class_id(&self) -> u16 {
        30
    }
    fn method_id(&self) -> u16 {
        11
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<AccessRequestOk> for Method {
    fn from(m: AccessRequestOk) -> Method {
        Method::AccessRequestOk(m)
    }
}

/// `exchange.declare` (40, 10).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExchangeDeclare {
    pub ticket: u16,
    pub exchange: ShortStr,
    pub kind: ShortStr,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub nowait: bool,
    pub arguments: FieldTable,
}

impl ExchangeDeclare {
    /// Class id.
    pub const CLASS_ID: u16 = 40;
    /// Method id.
    pub const METHOD_ID: u16 = 10;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let exchange = r.shortstr()?;
        let kind = r.shortstr()?;
        let bits = r.u8()?;
        let passive = bits & 1 != 0;
        let durable = bits & 2 != 0;
        let auto_delete = bits & 4 != 0;
        let internal = bits & 8 != 0;
        let nowait = bits & 16 != 0;
        let arguments = r.table()?;
        Ok(ExchangeDeclare {
            ticket,
            exchange,
            kind,
            passive,
            durable,
            auto_delete,
            internal,
            nowait,
            arguments,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.exchange);
        put_shortstr(out, &self.kind);
        out.put_u8(
            (self.passive as u8) << 0
                | (self.durable as u8) << 1
                | (self.auto_delete as u8) << 2
                | (self.internal as u8) << 3
                | (self.nowait as u8) << 4,
        );
        put_table(out, &self.arguments);
    }
}

impl MethodArgs for ExchangeDeclare {
    fn class_id(&self) -> u16 {
        40
    }
    fn method_id(&self) -> u16 {
        10
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ExchangeDeclare> for Method {
    fn from(m: ExchangeDeclare) -> Method {
        Method::ExchangeDeclare(Box::new(m))
    }
}

/// `exchange.declare-ok` (40, 11).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExchangeDeclareOk {}

impl ExchangeDeclareOk {
    /// Class id.
    pub const CLASS_ID: u16 = 40;
    /// Method id.
    pub const METHOD_ID: u16 = 11;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(ExchangeDeclareOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for ExchangeDeclareOk {
    fn class_id(&self) -> u16 {
        40
    }
    fn method_id(&self) -> u16 {
        11
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<ExchangeDeclareOk> for Method {
    fn from(m: ExchangeDeclareOk) -> Method {
        Method::ExchangeDeclareOk(m)
    }
}

/// `exchange.delete` (40, 20).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExchangeDelete {
    pub ticket: u16,
    pub exchange: ShortStr,
    pub if_unused: bool,
    pub nowait: bool,
}

impl ExchangeDelete {
    /// Class id.
    pub const CLASS_ID: u16 = 40;
    /// Method id.
    pub const METHOD_ID: u16 = 20;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let exchange = r.shortstr()?;
        let bits = r.u8()?;
        let if_unused = bits & 1 != 0;
        let nowait = bits & 2 != 0;
        Ok(ExchangeDelete {
            ticket,
            exchange,
            if_unused,
            nowait,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.exchange);
        out.put_u8((self.if_unused as u8) << 0 | (self.nowait as u8) << 1);
    }
}

impl MethodArgs for ExchangeDelete {
    fn class_id(&self) -> u16 {
        40
    }
    fn method_id(&self) -> u16 {
        20
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ExchangeDelete> for Method {
    fn from(m: ExchangeDelete) -> Method {
        Method::ExchangeDelete(m)
    }
}

/// `exchange.delete-ok` (40, 21).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExchangeDeleteOk {}

impl ExchangeDeleteOk {
    /// Class id.
    pub const CLASS_ID: u16 = 40;
    /// Method id.
    pub const METHOD_ID: u16 = 21;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(ExchangeDeleteOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for ExchangeDeleteOk {
    fn class_id(&self) -> u16 {
        40
    }
    fn method_id(&self) -> u16 {
        21
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<ExchangeDeleteOk> for Method {
    fn from(m: ExchangeDeleteOk) -> Method {
        Method::ExchangeDeleteOk(m)
    }
}

/// `exchange.bind` (40, 30).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExchangeBind {
    pub ticket: u16,
    pub destination: ShortStr,
    pub source: ShortStr,
    pub routing_key: ShortStr,
    pub nowait: bool,
    pub arguments: FieldTable,
}

impl ExchangeBind {
    /// Class id.
    pub const CLASS_ID: u16 = 40;
    /// Method id.
    pub const METHOD_ID: u16 = 30;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let destination = r.shortstr()?;
        let source = r.shortstr()?;
        let routing_key = r.shortstr()?;
        let bits = r.u8()?;
        let nowait = bits & 1 != 0;
        let arguments = r.table()?;
        Ok(ExchangeBind {
            ticket,
            destination,
            source,
            routing_key,
            nowait,
            arguments,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.destination);
        put_shortstr(out, &self.source);
        put_shortstr(out, &self.routing_key);
        out.put_u8((self.nowait as u8) << 0);
        put_table(out, &self.arguments);
    }
}

impl MethodArgs for ExchangeBind {
    fn class_id(&self) -> u16 {
        40
    }
    fn method_id(&self) -> u16 {
        30
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ExchangeBind> for Method {
    fn from(m: ExchangeBind) -> Method {
        Method::ExchangeBind(Box::new(m))
    }
}

/// `exchange.bind-ok` (40, 31).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExchangeBindOk {}

impl ExchangeBindOk {
    /// Class id.
    pub const CLASS_ID: u16 = 40;
    /// Method id.
    pub const METHOD_ID: u16 = 31;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(ExchangeBindOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for ExchangeBindOk {
    fn class_id(&self) -> u16 {
        40
    }
    fn method_id(&self) -> u16 {
        31
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<ExchangeBindOk> for Method {
    fn from(m: ExchangeBindOk) -> Method {
        Method::ExchangeBindOk(m)
    }
}

/// `exchange.unbind` (40, 40).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExchangeUnbind {
    pub ticket: u16,
    pub destination: ShortStr,
    pub source: ShortStr,
    pub routing_key: ShortStr,
    pub nowait: bool,
    pub arguments: FieldTable,
}

impl ExchangeUnbind {
    /// Class id.
    pub const CLASS_ID: u16 = 40;
    /// Method id.
    pub const METHOD_ID: u16 = 40;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let destination = r.shortstr()?;
        let source = r.shortstr()?;
        let routing_key = r.shortstr()?;
        let bits = r.u8()?;
        let nowait = bits & 1 != 0;
        let arguments = r.table()?;
        Ok(ExchangeUnbind {
            ticket,
            destination,
            source,
            routing_key,
            nowait,
            arguments,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.destination);
        put_shortstr(out, &self.source);
        put_shortstr(out, &self.routing_key);
        out.put_u8((self.nowait as u8) << 0);
        put_table(out, &self.arguments);
    }
}

impl MethodArgs for ExchangeUnbind {
    fn class_id(&self) -> u16 {
        40
    }
    fn method_id(&self) -> u16 {
        40
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ExchangeUnbind> for Method {
    fn from(m: ExchangeUnbind) -> Method {
        Method::ExchangeUnbind(Box::new(m))
    }
}

/// `exchange.unbind-ok` (40, 51).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExchangeUnbindOk {}

impl ExchangeUnbindOk {
    /// Class id.
    pub const CLASS_ID: u16 = 40;
    /// Method id.
    pub const METHOD_ID: u16 = 51;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(ExchangeUnbindOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for ExchangeUnbindOk {
    fn class_id(&self) -> u16 {
        40
    }
    fn method_id(&self) -> u16 {
        51
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<ExchangeUnbindOk> for Method {
    fn from(m: ExchangeUnbindOk) -> Method {
        Method::ExchangeUnbindOk(m)
    }
}

/// `queue.declare` (50, 10).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueDeclare {
    pub ticket: u16,
    pub queue: ShortStr,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub nowait: bool,
    pub arguments: FieldTable,
}

impl QueueDeclare {
    /// Class id.
    pub const CLASS_ID: u16 = 50;
    /// Method id.
    pub const METHOD_ID: u16 = 10;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let queue = r.shortstr()?;
        let bits = r.u8()?;
        let passive = bits & 1 != 0;
        let durable = bits & 2 != 0;
        let exclusive = bits & 4 != 0;
        let auto_delete = bits & 8 != 0;
        let nowait = bits & 16 != 0;
        let arguments = r.table()?;
        Ok(QueueDeclare {
            ticket,
            queue,
            passive,
            durable,
            exclusive,
            auto_delete,
            nowait,
            arguments,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.queue);
        out.put_u8(
            (self.passive as u8) << 0
                | (self.durable as u8) << 1
                | (self.exclusive as u8) << 2
                | (self.auto_delete as u8) << 3
                | (self.nowait as u8) << 4,
        );
        put_table(out, &self.arguments);
    }
}

impl MethodArgs for QueueDeclare {
    fn class_id(&self) -> u16 {
        50
    }
    fn method_id(&self) -> u16 {
        10
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<QueueDeclare> for Method {
    fn from(m: QueueDeclare) -> Method {
        Method::QueueDeclare(m)
    }
}

/// `queue.declare-ok` (50, 11).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueDeclareOk {
    pub queue: ShortStr,
    pub message_count: u32,
    pub consumer_count: u32,
}

impl QueueDeclareOk {
    /// Class id.
    pub const CLASS_ID: u16 = 50;
    /// Method id.
    pub const METHOD_ID: u16 = 11;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let queue = r.shortstr()?;
        let message_count = r.u32()?;
        let consumer_count = r.u32()?;
        Ok(QueueDeclareOk {
            queue,
            message_count,
            consumer_count,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_shortstr(out, &self.queue);
        out.put_u32(self.message_count);
        out.put_u32(self.consumer_count);
    }
}

impl MethodArgs for QueueDeclareOk {
    fn class_id(&self) -> u16 {
        50
    }
    fn method_id(&self) -> u16 {
        11
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<QueueDeclareOk> for Method {
    fn from(m: QueueDeclareOk) -> Method {
        Method::QueueDeclareOk(m)
    }
}

/// `queue.bind` (50, 20).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueBind {
    pub ticket: u16,
    pub queue: ShortStr,
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub nowait: bool,
    pub arguments: FieldTable,
}

impl QueueBind {
    /// Class id.
    pub const CLASS_ID: u16 = 50;
    /// Method id.
    pub const METHOD_ID: u16 = 20;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let queue = r.shortstr()?;
        let exchange = r.shortstr()?;
        let routing_key = r.shortstr()?;
        let bits = r.u8()?;
        let nowait = bits & 1 != 0;
        let arguments = r.table()?;
        Ok(QueueBind {
            ticket,
            queue,
            exchange,
            routing_key,
            nowait,
            arguments,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.queue);
        put_shortstr(out, &self.exchange);
        put_shortstr(out, &self.routing_key);
        out.put_u8((self.nowait as u8) << 0);
        put_table(out, &self.arguments);
    }
}

impl MethodArgs for QueueBind {
    fn class_id(&self) -> u16 {
        50
    }
    fn method_id(&self) -> u16 {
        20
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<QueueBind> for Method {
    fn from(m: QueueBind) -> Method {
        Method::QueueBind(Box::new(m))
    }
}

/// `queue.bind-ok` (50, 21).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueBindOk {}

impl QueueBindOk {
    /// Class id.
    pub const CLASS_ID: u16 = 50;
    /// Method id.
    pub const METHOD_ID: u16 = 21;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(QueueBindOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for QueueBindOk {
    fn class_id(&self) -> u16 {
        50
    }
    fn method_id(&self) -> u16 {
        21
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<QueueBindOk> for Method {
    fn from(m: QueueBindOk) -> Method {
        Method::QueueBindOk(m)
    }
}

/// `queue.purge` (50, 30).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueuePurge {
    pub ticket: u16,
    pub queue: ShortStr,
    pub nowait: bool,
}

impl QueuePurge {
    /// Class id.
    pub const CLASS_ID: u16 = 50;
    /// Method id.
    pub const METHOD_ID: u16 = 30;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let queue = r.shortstr()?;
        let bits = r.u8()?;
        let nowait = bits & 1 != 0;
        Ok(QueuePurge {
            ticket,
            queue,
            nowait,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.queue);
        out.put_u8((self.nowait as u8) << 0);
    }
}

impl MethodArgs for QueuePurge {
    fn class_id(&self) -> u16 {
        50
    }
    fn method_id(&self) -> u16 {
        30
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<QueuePurge> for Method {
    fn from(m: QueuePurge) -> Method {
        Method::QueuePurge(m)
    }
}

/// `queue.purge-ok` (50, 31).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueuePurgeOk {
    pub message_count: u32,
}

impl QueuePurgeOk {
    /// Class id.
    pub const CLASS_ID: u16 = 50;
    /// Method id.
    pub const METHOD_ID: u16 = 31;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let message_count = r.u32()?;
        Ok(QueuePurgeOk { message_count })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u32(self.message_count);
    }
}

impl MethodArgs for QueuePurgeOk {
    fn class_id(&self) -> u16 {
        50
    }
    fn method_id(&self) -> u16 {
        31
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<QueuePurgeOk> for Method {
    fn from(m: QueuePurgeOk) -> Method {
        Method::QueuePurgeOk(m)
    }
}

/// `queue.delete` (50, 40).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueDelete {
    pub ticket: u16,
    pub queue: ShortStr,
    pub if_unused: bool,
    pub if_empty: bool,
    pub nowait: bool,
}

impl QueueDelete {
    /// Class id.
    pub const CLASS_ID: u16 = 50;
    /// Method id.
    pub const METHOD_ID: u16 = 40;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let queue = r.shortstr()?;
        let bits = r.u8()?;
        let if_unused = bits & 1 != 0;
        let if_empty = bits & 2 != 0;
        let nowait = bits & 4 != 0;
        Ok(QueueDelete {
            ticket,
            queue,
            if_unused,
            if_empty,
            nowait,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.queue);
        out.put_u8((self.if_unused as u8) << 0 | (self.if_empty as u8) << 1 | (self.nowait as u8) << 2);
    }
}

impl MethodArgs for QueueDelete {
    fn class_id(&self) -> u16 {
        50
    }
    fn method_id(&self) -> u16 {
        40
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<QueueDelete> for Method {
    fn from(m: QueueDelete) -> Method {
        Method::QueueDelete(m)
    }
}

/// `queue.delete-ok` (50, 41).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueDeleteOk {
    pub message_count: u32,
}

impl QueueDeleteOk {
    /// Class id.
    pub const CLASS_ID: u16 = 50;
    /// Method id.
    pub const METHOD_ID: u16 = 41;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let message_count = r.u32()?;
        Ok(QueueDeleteOk { message_count })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u32(self.message_count);
    }
}

impl MethodArgs for QueueDeleteOk {
    fn class_id(&self) -> u16 {
        50
    }
    fn method_id(&self) -> u16 {
        41
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<QueueDeleteOk> for Method {
    fn from(m: QueueDeleteOk) -> Method {
        Method::QueueDeleteOk(m)
    }
}

/// `queue.unbind` (50, 50).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueUnbind {
    pub ticket: u16,
    pub queue: ShortStr,
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub arguments: FieldTable,
}

impl QueueUnbind {
    /// Class id.
    pub const CLASS_ID: u16 = 50;
    /// Method id.
    pub const METHOD_ID: u16 = 50;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let queue = r.shortstr()?;
        let exchange = r.shortstr()?;
        let routing_key = r.shortstr()?;
        let arguments = r.table()?;
        Ok(QueueUnbind {
            ticket,
            queue,
            exchange,
            routing_key,
            arguments,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.queue);
        put_shortstr(out, &self.exchange);
        put_shortstr(out, &self.routing_key);
        put_table(out, &self.arguments);
    }
}

impl MethodArgs for QueueUnbind {
    fn class_id(&self) -> u16 {
        50
    }
    fn method_id(&self) -> u16 {
        50
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<QueueUnbind> for Method {
    fn from(m: QueueUnbind) -> Method {
        Method::QueueUnbind(Box::new(m))
    }
}

/// `queue.unbind-ok` (50, 51).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueUnbindOk {}

impl QueueUnbindOk {
    /// Class id.
    pub const CLASS_ID: u16 = 50;
    /// Method id.
    pub const METHOD_ID: u16 = 51;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(QueueUnbindOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for QueueUnbindOk {
    fn class_id(&self) -> u16 {
        50
    }
    fn method_id(&self) -> u16 {
        51
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<QueueUnbindOk> for Method {
    fn from(m: QueueUnbindOk) -> Method {
        Method::QueueUnbindOk(m)
    }
}

/// `basic.qos` (60, 10).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicQos {
    pub prefetch_size: u32,
    pub prefetch_count: u16,
    pub global: bool,
}

impl BasicQos {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 10;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let prefetch_size = r.u32()?;
        let prefetch_count = r.u16()?;
        let bits = r.u8()?;
        let global = bits & 1 != 0;
        Ok(BasicQos {
            prefetch_size,
            prefetch_count,
            global,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u32(self.prefetch_size);
        out.put_u16(self.prefetch_count);
        out.put_u8((self.global as u8) << 0);
    }
}

impl MethodArgs for BasicQos {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        10
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicQos> for Method {
    fn from(m: BasicQos) -> Method {
        Method::BasicQos(m)
    }
}

/// `basic.qos-ok` (60, 11).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicQosOk {}

impl BasicQosOk {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 11;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(BasicQosOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for BasicQosOk {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        11
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<BasicQosOk> for Method {
    fn from(m: BasicQosOk) -> Method {
        Method::BasicQosOk(m)
    }
}

/// `basic.consume` (60, 20).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicConsume {
    pub ticket: u16,
    pub queue: ShortStr,
    pub consumer_tag: ShortStr,
    pub no_local: bool,
    pub no_ack: bool,
    pub exclusive: bool,
    pub nowait: bool,
    pub arguments: FieldTable,
}

impl BasicConsume {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 20;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let queue = r.shortstr()?;
        let consumer_tag = r.shortstr()?;
        let bits = r.u8()?;
        let no_local = bits & 1 != 0;
        let no_ack = bits & 2 != 0;
        let exclusive = bits & 4 != 0;
        let nowait = bits & 8 != 0;
        let arguments = r.table()?;
        Ok(BasicConsume {
            ticket,
            queue,
            consumer_tag,
            no_local,
            no_ack,
            exclusive,
            nowait,
            arguments,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.queue);
        put_shortstr(out, &self.consumer_tag);
        out.put_u8(
            (self.no_local as u8) << 0
                | (self.no_ack as u8) << 1
                | (self.exclusive as u8) << 2
                | (self.nowait as u8) << 3,
        );
        put_table(out, &self.arguments);
    }
}

impl MethodArgs for BasicConsume {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        20
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicConsume> for Method {
    fn from(m: BasicConsume) -> Method {
        Method::BasicConsume(Box::new(m))
    }
}

/// `basic.consume-ok` (60, 21).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicConsumeOk {
    pub consumer_tag: ShortStr,
}

impl BasicConsumeOk {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 21;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let consumer_tag = r.shortstr()?;
        Ok(BasicConsumeOk { consumer_tag })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_shortstr(out, &self.consumer_tag);
    }
}

impl MethodArgs for BasicConsumeOk {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        21
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicConsumeOk> for Method {
    fn from(m: BasicConsumeOk) -> Method {
        Method::BasicConsumeOk(m)
    }
}

/// `basic.cancel` (60, 30).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicCancel {
    pub consumer_tag: ShortStr,
    pub nowait: bool,
}

impl BasicCancel {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 30;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let consumer_tag = r.shortstr()?;
        let bits = r.u8()?;
        let nowait = bits & 1 != 0;
        Ok(BasicCancel { consumer_tag, nowait })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_shortstr(out, &self.consumer_tag);
        out.put_u8((self.nowait as u8) << 0);
    }
}

impl MethodArgs for BasicCancel {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        30
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicCancel> for Method {
    fn from(m: BasicCancel) -> Method {
        Method::BasicCancel(m)
    }
}

/// `basic.cancel-ok` (60, 31).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicCancelOk {
    pub consumer_tag: ShortStr,
}

impl BasicCancelOk {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 31;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let consumer_tag = r.shortstr()?;
        Ok(BasicCancelOk { consumer_tag })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_shortstr(out, &self.consumer_tag);
    }
}

impl MethodArgs for BasicCancelOk {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        31
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicCancelOk> for Method {
    fn from(m: BasicCancelOk) -> Method {
        Method::BasicCancelOk(m)
    }
}

/// `basic.publish` (60, 40).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicPublish {
    pub ticket: u16,
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub mandatory: bool,
    pub immediate: bool,
}

impl BasicPublish {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 40;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let exchange = r.shortstr()?;
        let routing_key = r.shortstr()?;
        let bits = r.u8()?;
        let mandatory = bits & 1 != 0;
        let immediate = bits & 2 != 0;
        Ok(BasicPublish {
            ticket,
            exchange,
            routing_key,
            mandatory,
            immediate,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.exchange);
        put_shortstr(out, &self.routing_key);
        out.put_u8((self.mandatory as u8) << 0 | (self.immediate as u8) << 1);
    }
}

impl MethodArgs for BasicPublish {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        40
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicPublish> for Method {
    fn from(m: BasicPublish) -> Method {
        Method::BasicPublish(m)
    }
}

/// `basic.return` (60, 50).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicReturn {
    pub reply_code: u16,
    pub reply_text: ShortStr,
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
}

impl BasicReturn {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 50;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let reply_code = r.u16()?;
        let reply_text = r.shortstr()?;
        let exchange = r.shortstr()?;
        let routing_key = r.shortstr()?;
        Ok(BasicReturn {
            reply_code,
            reply_text,
            exchange,
            routing_key,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.reply_code);
        put_shortstr(out, &self.reply_text);
        put_shortstr(out, &self.exchange);
        put_shortstr(out, &self.routing_key);
    }
}

impl MethodArgs for BasicReturn {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        50
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicReturn> for Method {
    fn from(m: BasicReturn) -> Method {
        Method::BasicReturn(Box::new(m))
    }
}

/// `basic.deliver` (60, 60).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicDeliver {
    pub consumer_tag: ShortStr,
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
}

impl BasicDeliver {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 60;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let consumer_tag = r.shortstr()?;
        let delivery_tag = r.u64()?;
        let bits = r.u8()?;
        let redelivered = bits & 1 != 0;
        let exchange = r.shortstr()?;
        let routing_key = r.shortstr()?;
        Ok(BasicDeliver {
            consumer_tag,
            delivery_tag,
            redelivered,
            exchange,
            routing_key,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_shortstr(out, &self.consumer_tag);
        out.put_u64(self.delivery_tag);
        out.put_u8((self.redelivered as u8) << 0);
        put_shortstr(out, &self.exchange);
        put_shortstr(out, &self.routing_key);
    }
}

impl MethodArgs for BasicDeliver {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        60
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicDeliver> for Method {
    fn from(m: BasicDeliver) -> Method {
        Method::BasicDeliver(Box::new(m))
    }
}

/// `basic.get` (60, 70).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicGet {
    pub ticket: u16,
    pub queue: ShortStr,
    pub no_ack: bool,
}

impl BasicGet {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 70;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let ticket = r.u16()?;
        let queue = r.shortstr()?;
        let bits = r.u8()?;
        let no_ack = bits & 1 != 0;
        Ok(BasicGet {
            ticket,
            queue,
            no_ack,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.ticket);
        put_shortstr(out, &self.queue);
        out.put_u8((self.no_ack as u8) << 0);
    }
}

impl MethodArgs for BasicGet {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        70
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicGet> for Method {
    fn from(m: BasicGet) -> Method {
        Method::BasicGet(m)
    }
}

/// `basic.get-ok` (60, 71).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicGetOk {
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub message_count: u32,
}

impl BasicGetOk {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 71;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let delivery_tag = r.u64()?;
        let bits = r.u8()?;
        let redelivered = bits & 1 != 0;
        let exchange = r.shortstr()?;
        let routing_key = r.shortstr()?;
        let message_count = r.u32()?;
        Ok(BasicGetOk {
            delivery_tag,
            redelivered,
            exchange,
            routing_key,
            message_count,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u64(self.delivery_tag);
        out.put_u8((self.redelivered as u8) << 0);
        put_shortstr(out, &self.exchange);
        put_shortstr(out, &self.routing_key);
        out.put_u32(self.message_count);
    }
}

impl MethodArgs for BasicGetOk {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        71
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicGetOk> for Method {
    fn from(m: BasicGetOk) -> Method {
        Method::BasicGetOk(Box::new(m))
    }
}

/// `basic.get-empty` (60, 72).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicGetEmpty {
    pub cluster_id: ShortStr,
}

impl BasicGetEmpty {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 72;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let cluster_id = r.shortstr()?;
        Ok(BasicGetEmpty { cluster_id })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        put_shortstr(out, &self.cluster_id);
    }
}

impl MethodArgs for BasicGetEmpty {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        72
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicGetEmpty> for Method {
    fn from(m: BasicGetEmpty) -> Method {
        Method::BasicGetEmpty(m)
    }
}

/// `basic.ack` (60, 80).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicAck {
    pub delivery_tag: u64,
    pub multiple: bool,
}

impl BasicAck {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 80;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let delivery_tag = r.u64()?;
        let bits = r.u8()?;
        let multiple = bits & 1 != 0;
        Ok(BasicAck {
            delivery_tag,
            multiple,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u64(self.delivery_tag);
        out.put_u8((self.multiple as u8) << 0);
    }
}

impl MethodArgs for BasicAck {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        80
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicAck> for Method {
    fn from(m: BasicAck) -> Method {
        Method::BasicAck(m)
    }
}

/// `basic.reject` (60, 90).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicReject {
    pub delivery_tag: u64,
    pub requeue: bool,
}

impl BasicReject {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 90;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let delivery_tag = r.u64()?;
        let bits = r.u8()?;
        let requeue = bits & 1 != 0;
        Ok(BasicReject {
            delivery_tag,
            requeue,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u64(self.delivery_tag);
        out.put_u8((self.requeue as u8) << 0);
    }
}

impl MethodArgs for BasicReject {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        90
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicReject> for Method {
    fn from(m: BasicReject) -> Method {
        Method::BasicReject(m)
    }
}

/// `basic.recover-async` (60, 100).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicRecoverAsync {
    pub requeue: bool,
}

impl BasicRecoverAsync {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 100;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let bits = r.u8()?;
        let requeue = bits & 1 != 0;
        Ok(BasicRecoverAsync { requeue })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u8((self.requeue as u8) << 0);
    }
}

impl MethodArgs for BasicRecoverAsync {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        100
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicRecoverAsync> for Method {
    fn from(m: BasicRecoverAsync) -> Method {
        Method::BasicRecoverAsync(m)
    }
}

/// `basic.recover` (60, 110).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicRecover {
    pub requeue: bool,
}

impl BasicRecover {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 110;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let bits = r.u8()?;
        let requeue = bits & 1 != 0;
        Ok(BasicRecover { requeue })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u8((self.requeue as u8) << 0);
    }
}

impl MethodArgs for BasicRecover {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        110
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicRecover> for Method {
    fn from(m: BasicRecover) -> Method {
        Method::BasicRecover(m)
    }
}

/// `basic.recover-ok` (60, 111).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicRecoverOk {}

impl BasicRecoverOk {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 111;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(BasicRecoverOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for BasicRecoverOk {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        111
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<BasicRecoverOk> for Method {
    fn from(m: BasicRecoverOk) -> Method {
        Method::BasicRecoverOk(m)
    }
}

/// `basic.nack` (60, 120).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicNack {
    pub delivery_tag: u64,
    pub multiple: bool,
    pub requeue: bool,
}

impl BasicNack {
    /// Class id.
    pub const CLASS_ID: u16 = 60;
    /// Method id.
    pub const METHOD_ID: u16 = 120;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let delivery_tag = r.u64()?;
        let bits = r.u8()?;
        let multiple = bits & 1 != 0;
        let requeue = bits & 2 != 0;
        Ok(BasicNack {
            delivery_tag,
            multiple,
            requeue,
        })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u64(self.delivery_tag);
        out.put_u8((self.multiple as u8) << 0 | (self.requeue as u8) << 1);
    }
}

impl MethodArgs for BasicNack {
    fn class_id(&self) -> u16 {
        60
    }
    fn method_id(&self) -> u16 {
        120
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<BasicNack> for Method {
    fn from(m: BasicNack) -> Method {
        Method::BasicNack(m)
    }
}

/// `confirm.select` (85, 10).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfirmSelect {
    pub nowait: bool,
}

impl ConfirmSelect {
    /// Class id.
    pub const CLASS_ID: u16 = 85;
    /// Method id.
    pub const METHOD_ID: u16 = 10;
    fn decode_fields(r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        let bits = r.u8()?;
        let nowait = bits & 1 != 0;
        Ok(ConfirmSelect { nowait })
    }
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u8((self.nowait as u8) << 0);
    }
}

impl MethodArgs for ConfirmSelect {
    fn class_id(&self) -> u16 {
        85
    }
    fn method_id(&self) -> u16 {
        10
    }
    fn encode_args(&self, out: &mut BytesMut) {
        self.encode_fields(out)
    }
}

impl From<ConfirmSelect> for Method {
    fn from(m: ConfirmSelect) -> Method {
        Method::ConfirmSelect(m)
    }
}

/// `confirm.select-ok` (85, 11).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfirmSelectOk {}

impl ConfirmSelectOk {
    /// Class id.
    pub const CLASS_ID: u16 = 85;
    /// Method id.
    pub const METHOD_ID: u16 = 11;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(ConfirmSelectOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for ConfirmSelectOk {
    fn class_id(&self) -> u16 {
        85
    }
    fn method_id(&self) -> u16 {
        11
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<ConfirmSelectOk> for Method {
    fn from(m: ConfirmSelectOk) -> Method {
        Method::ConfirmSelectOk(m)
    }
}

/// `tx.select` (90, 10).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TxSelect {}

impl TxSelect {
    /// Class id.
    pub const CLASS_ID: u16 = 90;
    /// Method id.
    pub const METHOD_ID: u16 = 10;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(TxSelect {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for TxSelect {
    fn class_id(&self) -> u16 {
        90
    }
    fn method_id(&self) -> u16 {
        10
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<TxSelect> for Method {
    fn from(m: TxSelect) -> Method {
        Method::TxSelect(m)
    }
}

/// `tx.select-ok` (90, 11).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TxSelectOk {}

impl TxSelectOk {
    /// Class id.
    pub const CLASS_ID: u16 = 90;
    /// Method id.
    pub const METHOD_ID: u16 = 11;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(TxSelectOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for TxSelectOk {
    fn class_id(&self) -> u16 {
        90
    }
    fn method_id(&self) -> u16 {
        11
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<TxSelectOk> for Method {
    fn from(m: TxSelectOk) -> Method {
        Method::TxSelectOk(m)
    }
}

/// `tx.commit` (90, 20).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TxCommit {}

impl TxCommit {
    /// Class id.
    pub const CLASS_ID: u16 = 90;
    /// Method id.
    pub const METHOD_ID: u16 = 20;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(TxCommit {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for TxCommit {
    fn class_id(&self) -> u16 {
        90
    }
    fn method_id(&self) -> u16 {
        20
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<TxCommit> for Method {
    fn from(m: TxCommit) -> Method {
        Method::TxCommit(m)
    }
}

/// `tx.commit-ok` (90, 21).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TxCommitOk {}

impl TxCommitOk {
    /// Class id.
    pub const CLASS_ID: u16 = 90;
    /// Method id.
    pub const METHOD_ID: u16 = 21;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(TxCommitOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for TxCommitOk {
    fn class_id(&self) -> u16 {
        90
    }
    fn method_id(&self) -> u16 {
        21
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<TxCommitOk> for Method {
    fn from(m: TxCommitOk) -> Method {
        Method::TxCommitOk(m)
    }
}

/// `tx.rollback` (90, 30).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TxRollback {}

impl TxRollback {
    /// Class id.
    pub const CLASS_ID: u16 = 90;
    /// Method id.
    pub const METHOD_ID: u16 = 30;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(TxRollback {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for TxRollback {
    fn class_id(&self) -> u16 {
        90
    }
    fn method_id(&self) -> u16 {
        30
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<TxRollback> for Method {
    fn from(m: TxRollback) -> Method {
        Method::TxRollback(m)
    }
}

/// `tx.rollback-ok` (90, 31).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TxRollbackOk {}

impl TxRollbackOk {
    /// Class id.
    pub const CLASS_ID: u16 = 90;
    /// Method id.
    pub const METHOD_ID: u16 = 31;
    fn decode_fields(_r: &mut Reader<'_>) -> Result<Self, SyntaxReason> {
        Ok(TxRollbackOk {})
    }
    fn encode_fields(&self, _out: &mut BytesMut) {}
}

impl MethodArgs for TxRollbackOk {
    fn class_id(&self) -> u16 {
        90
    }
    fn method_id(&self) -> u16 {
        31
    }
    fn encode_args(&self, _out: &mut BytesMut) {
        self.encode_fields(_out)
    }
}

impl From<TxRollbackOk> for Method {
    fn from(m: TxRollbackOk) -> Method {
        Method::TxRollbackOk(m)
    }
}

/// Every AMQP method, one variant per method; those larger than `basic.publish` boxed.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    ConnectionStart(Box<ConnectionStart>),
    ConnectionStartOk(Box<ConnectionStartOk>),
    ConnectionSecure(ConnectionSecure),
    ConnectionSecureOk(ConnectionSecureOk),
    ConnectionTune(ConnectionTune),
    ConnectionTuneOk(ConnectionTuneOk),
    ConnectionOpen(ConnectionOpen),
    ConnectionOpenOk(ConnectionOpenOk),
    ConnectionClose(ConnectionClose),
    ConnectionCloseOk(ConnectionCloseOk),
    ConnectionBlocked(ConnectionBlocked),
    ConnectionUnblocked(ConnectionUnblocked),
    ConnectionUpdateSecret(ConnectionUpdateSecret),
    ConnectionUpdateSecretOk(ConnectionUpdateSecretOk),
    ChannelOpen(ChannelOpen),
    ChannelOpenOk(ChannelOpenOk),
    ChannelFlow(ChannelFlow),
    ChannelFlowOk(ChannelFlowOk),
    ChannelClose(ChannelClose),
    ChannelCloseOk(ChannelCloseOk),
    AccessRequest(AccessRequest),
    AccessRequestOk(AccessRequestOk),
    ExchangeDeclare(Box<ExchangeDeclare>),
    ExchangeDeclareOk(ExchangeDeclareOk),
    ExchangeDelete(ExchangeDelete),
    ExchangeDeleteOk(ExchangeDeleteOk),
    ExchangeBind(Box<ExchangeBind>),
    ExchangeBindOk(ExchangeBindOk),
    ExchangeUnbind(Box<ExchangeUnbind>),
    ExchangeUnbindOk(ExchangeUnbindOk),
    QueueDeclare(QueueDeclare),
    QueueDeclareOk(QueueDeclareOk),
    QueueBind(Box<QueueBind>),
    QueueBindOk(QueueBindOk),
    QueuePurge(QueuePurge),
    QueuePurgeOk(QueuePurgeOk),
    QueueDelete(QueueDelete),
    QueueDeleteOk(QueueDeleteOk),
    QueueUnbind(Box<QueueUnbind>),
    QueueUnbindOk(QueueUnbindOk),
    BasicQos(BasicQos),
    BasicQosOk(BasicQosOk),
    BasicConsume(Box<BasicConsume>),
    BasicConsumeOk(BasicConsumeOk),
    BasicCancel(BasicCancel),
    BasicCancelOk(BasicCancelOk),
    BasicPublish(BasicPublish),
    BasicReturn(Box<BasicReturn>),
    BasicDeliver(Box<BasicDeliver>),
    BasicGet(BasicGet),
    BasicGetOk(Box<BasicGetOk>),
    BasicGetEmpty(BasicGetEmpty),
    BasicAck(BasicAck),
    BasicReject(BasicReject),
    BasicRecoverAsync(BasicRecoverAsync),
    BasicRecover(BasicRecover),
    BasicRecoverOk(BasicRecoverOk),
    BasicNack(BasicNack),
    ConfirmSelect(ConfirmSelect),
    ConfirmSelectOk(ConfirmSelectOk),
    TxSelect(TxSelect),
    TxSelectOk(TxSelectOk),
    TxCommit(TxCommit),
    TxCommitOk(TxCommitOk),
    TxRollback(TxRollback),
    TxRollbackOk(TxRollbackOk),
}

impl Method {
    /// Class id of the method.
    pub fn class_id(&self) -> u16 {
        match self {
            Method::ConnectionStart(_) => 10,
            Method::ConnectionStartOk(_) => 10,
            Method::ConnectionSecure(_) => 10,
            Method::ConnectionSecureOk(_) => 10,
            Method::ConnectionTune(_) => 10,
            Method::ConnectionTuneOk(_) => 10,
            Method::ConnectionOpen(_) => 10,
            Method::ConnectionOpenOk(_) => 10,
            Method::ConnectionClose(_) => 10,
            Method::ConnectionCloseOk(_) => 10,
            Method::ConnectionBlocked(_) => 10,
            Method::ConnectionUnblocked(_) => 10,
            Method::ConnectionUpdateSecret(_) => 10,
            Method::ConnectionUpdateSecretOk(_) => 10,
            Method::ChannelOpen(_) => 20,
            Method::ChannelOpenOk(_) => 20,
            Method::ChannelFlow(_) => 20,
            Method::ChannelFlowOk(_) => 20,
            Method::ChannelClose(_) => 20,
            Method::ChannelCloseOk(_) => 20,
            Method::AccessRequest(_) => 30,
            Method::AccessRequestOk(_) => 30,
            Method::ExchangeDeclare(_) => 40,
            Method::ExchangeDeclareOk(_) => 40,
            Method::ExchangeDelete(_) => 40,
            Method::ExchangeDeleteOk(_) => 40,
            Method::ExchangeBind(_) => 40,
            Method::ExchangeBindOk(_) => 40,
            Method::ExchangeUnbind(_) => 40,
            Method::ExchangeUnbindOk(_) => 40,
            Method::QueueDeclare(_) => 50,
            Method::QueueDeclareOk(_) => 50,
            Method::QueueBind(_) => 50,
            Method::QueueBindOk(_) => 50,
            Method::QueuePurge(_) => 50,
            Method::QueuePurgeOk(_) => 50,
            Method::QueueDelete(_) => 50,
            Method::QueueDeleteOk(_) => 50,
            Method::QueueUnbind(_) => 50,
            Method::QueueUnbindOk(_) => 50,
            Method::BasicQos(_) => 60,
            Method::BasicQosOk(_) => 60,
            Method::BasicConsume(_) => 60,
            Method::BasicConsumeOk(_) => 60,
            Method::BasicCancel(_) => 60,
            Method::BasicCancelOk(_) => 60,
            Method::BasicPublish(_) => 60,
            Method::BasicReturn(_) => 60,
            Method::BasicDeliver(_) => 60,
            Method::BasicGet(_) => 60,
            Method::BasicGetOk(_) => 60,
            Method::BasicGetEmpty(_) => 60,
            Method::BasicAck(_) => 60,
            Method::BasicReject(_) => 60,
            Method::BasicRecoverAsync(_) => 60,
            Method::BasicRecover(_) => 60,
            Method::BasicRecoverOk(_) => 60,
            Method::BasicNack(_) => 60,
            Method::ConfirmSelect(_) => 85,
            Method::ConfirmSelectOk(_) => 85,
            Method::TxSelect(_) => 90,
            Method::TxSelectOk(_) => 90,
            Method::TxCommit(_) => 90,
            Method::TxCommitOk(_) => 90,
            Method::TxRollback(_) => 90,
            Method::TxRollbackOk(_) => 90,
        }
    }

    /// Method id within its class.
    pub fn method_id(&self) -> u16 {
        match self {
            Method::ConnectionStart(_) => 10,
            Method::ConnectionStartOk(_) => 11,
            Method::ConnectionSecure(_) => 20,
            Method::ConnectionSecureOk(_) => 21,
            Method::ConnectionTune(_) => 30,
            Method::ConnectionTuneOk(_) => 31,
            Method::ConnectionOpen(_) => 40,
            Method::ConnectionOpenOk(_) => 41,
            Method::ConnectionClose(_) => 50,
            Method::ConnectionCloseOk(_) => 51,
            Method::ConnectionBlocked(_) => 60,
            Method::ConnectionUnblocked(_) => 61,
            Method::ConnectionUpdateSecret(_) => 70,
            Method::ConnectionUpdateSecretOk(_) => 71,
            Method::ChannelOpen(_) => 10,
            Method::ChannelOpenOk(_) => 11,
            Method::ChannelFlow(_) => 20,
            Method::ChannelFlowOk(_) => 21,
            Method::ChannelClose(_) => 40,
            Method::ChannelCloseOk(_) => 41,
            Method::AccessRequest(_) => 10,
            Method::AccessRequestOk(_) => 11,
            Method::ExchangeDeclare(_) => 10,
            Method::ExchangeDeclareOk(_) => 11,
            Method::ExchangeDelete(_) => 20,
            Method::ExchangeDeleteOk(_) => 21,
            Method::ExchangeBind(_) => 30,
            Method::ExchangeBindOk(_) => 31,
            Method::ExchangeUnbind(_) => 40,
            Method::ExchangeUnbindOk(_) => 51,
            Method::QueueDeclare(_) => 10,
            Method::QueueDeclareOk(_) => 11,
            Method::QueueBind(_) => 20,
            Method::QueueBindOk(_) => 21,
            Method::QueuePurge(_) => 30,
            Method::QueuePurgeOk(_) => 31,
            Method::QueueDelete(_) => 40,
            Method::QueueDeleteOk(_) => 41,
            Method::QueueUnbind(_) => 50,
            Method::QueueUnbindOk(_) => 51,
            Method::BasicQos(_) => 10,
            Method::BasicQosOk(_) => 11,
            Method::BasicConsume(_) => 20,
            Method::BasicConsumeOk(_) => 21,
            Method::BasicCancel(_) => 30,
            Method::BasicCancelOk(_) => 31,
            Method::BasicPublish(_) => 40,
            Method::BasicReturn(_) => 50,
            Method::BasicDeliver(_) => 60,
            Method::BasicGet(_) => 70,
            Method::BasicGetOk(_) => 71,
            Method::BasicGetEmpty(_) => 72,
            Method::BasicAck(_) => 80,
            Method::BasicReject(_) => 90,
            Method::BasicRecoverAsync(_) => 100,
            Method::BasicRecover(_) => 110,
            Method::BasicRecoverOk(_) => 111,
            Method::BasicNack(_) => 120,
            Method::ConfirmSelect(_) => 10,
            Method::ConfirmSelectOk(_) => 11,
            Method::TxSelect(_) => 10,
            Method::TxSelectOk(_) => 11,
            Method::TxCommit(_) => 20,
            Method::TxCommitOk(_) => 21,
            Method::TxRollback(_) => 30,
            Method::TxRollbackOk(_) => 31,
        }
    }

    /// `class.method` as the spec spells it (`basic.publish`).
    pub fn name(&self) -> &'static str {
        method_name(self.class_id(), self.method_id()).unwrap_or("unknown")
    }

    /// Whether a content header and body frames follow this method.
    pub fn has_content(&self) -> bool {
        matches!(
            self,
            Method::BasicPublish(_)
                | Method::BasicReturn(_)
                | Method::BasicDeliver(_)
                | Method::BasicGetOk(_)
        )
    }

    /// Decodes a method frame's payload: class id, method id, arguments.
    pub fn decode(payload: &Bytes) -> Result<Method, crate::CodecError> {
        Self::decode_reader(&mut Reader::new(payload))
    }

    /// Decodes a method frame's payload from a reader (which must hold exactly the payload).
    pub(crate) fn decode_reader(r: &mut Reader<'_>) -> Result<Method, crate::CodecError> {
        let syntax = |class_id, method_id| {
            move |reason| crate::CodecError::Syntax {
                class_id,
                method_id,
                reason,
            }
        };
        let class_id = r.u16().map_err(syntax(0, 0))?;
        let method_id = r.u16().map_err(syntax(class_id, 0))?;
        let m = match (class_id, method_id) {
            (10, 10) => ConnectionStart::decode_fields(r).map(|m| Method::ConnectionStart(Box::new(m))),
            (10, 11) => ConnectionStartOk::decode_fields(r).map(|m| Method::ConnectionStartOk(Box::new(m))),
            (10, 20) => ConnectionSecure::decode_fields(r).map(Method::ConnectionSecure),
            (10, 21) => ConnectionSecureOk::decode_fields(r).map(Method::ConnectionSecureOk),
            (10, 30) => ConnectionTune::decode_fields(r).map(Method::ConnectionTune),
            (10, 31) => ConnectionTuneOk::decode_fields(r).map(Method::ConnectionTuneOk),
            (10, 40) => ConnectionOpen::decode_fields(r).map(Method::ConnectionOpen),
            (10, 41) => ConnectionOpenOk::decode_fields(r).map(Method::ConnectionOpenOk),
            (10, 50) => ConnectionClose::decode_fields(r).map(Method::ConnectionClose),
            (10, 51) => ConnectionCloseOk::decode_fields(r).map(Method::ConnectionCloseOk),
            (10, 60) => ConnectionBlocked::decode_fields(r).map(Method::ConnectionBlocked),
            (10, 61) => ConnectionUnblocked::decode_fields(r).map(Method::ConnectionUnblocked),
            (10, 70) => ConnectionUpdateSecret::decode_fields(r).map(Method::ConnectionUpdateSecret),
            (10, 71) => ConnectionUpdateSecretOk::decode_fields(r).map(Method::ConnectionUpdateSecretOk),
            (20, 10) => ChannelOpen::decode_fields(r).map(Method::ChannelOpen),
            (20, 11) => ChannelOpenOk::decode_fields(r).map(Method::ChannelOpenOk),
            (20, 20) => ChannelFlow::decode_fields(r).map(Method::ChannelFlow),
            (20, 21) => ChannelFlowOk::decode_fields(r).map(Method::ChannelFlowOk),
            (20, 40) => ChannelClose::decode_fields(r).map(Method::ChannelClose),
            (20, 41) => ChannelCloseOk::decode_fields(r).map(Method::ChannelCloseOk),
            (30, 10) => AccessRequest::decode_fields(r).map(Method::AccessRequest),
            (30, 11) => AccessRequestOk::decode_fields(r).map(Method::AccessRequestOk),
            (40, 10) => ExchangeDeclare::decode_fields(r).map(|m| Method::ExchangeDeclare(Box::new(m))),
            (40, 11) => ExchangeDeclareOk::decode_fields(r).map(Method::ExchangeDeclareOk),
            (40, 20) => ExchangeDelete::decode_fields(r).map(Method::ExchangeDelete),
            (40, 21) => ExchangeDeleteOk::decode_fields(r).map(Method::ExchangeDeleteOk),
            (40, 30) => ExchangeBind::decode_fields(r).map(|m| Method::ExchangeBind(Box::new(m))),
            (40, 31) => ExchangeBindOk::decode_fields(r).map(Method::ExchangeBindOk),
            (40, 40) => ExchangeUnbind::decode_fields(r).map(|m| Method::ExchangeUnbind(Box::new(m))),
            (40, 51) => ExchangeUnbindOk::decode_fields(r).map(Method::ExchangeUnbindOk),
            (50, 10) => QueueDeclare::decode_fields(r).map(Method::QueueDeclare),
            (50, 11) => QueueDeclareOk::decode_fields(r).map(Method::QueueDeclareOk),
            (50, 20) => QueueBind::decode_fields(r).map(|m| Method::QueueBind(Box::new(m))),
            (50, 21) => QueueBindOk::decode_fields(r).map(Method::QueueBindOk),
            (50, 30) => QueuePurge::decode_fields(r).map(Method::QueuePurge),
            (50, 31) => QueuePurgeOk::decode_fields(r).map(Method::QueuePurgeOk),
            (50, 40) => QueueDelete::decode_fields(r).map(Method::QueueDelete),
            (50, 41) => QueueDeleteOk::decode_fields(r).map(Method::QueueDeleteOk),
            (50, 50) => QueueUnbind::decode_fields(r).map(|m| Method::QueueUnbind(Box::new(m))),
            (50, 51) => QueueUnbindOk::decode_fields(r).map(Method::QueueUnbindOk),
            (60, 10) => BasicQos::decode_fields(r).map(Method::BasicQos),
            (60, 11) => BasicQosOk::decode_fields(r).map(Method::BasicQosOk),
            (60, 20) => BasicConsume::decode_fields(r).map(|m| Method::BasicConsume(Box::new(m))),
            (60, 21) => BasicConsumeOk::decode_fields(r).map(Method::BasicConsumeOk),
            (60, 30) => BasicCancel::decode_fields(r).map(Method::BasicCancel),
            (60, 31) => BasicCancelOk::decode_fields(r).map(Method::BasicCancelOk),
            (60, 40) => BasicPublish::decode_fields(r).map(Method::BasicPublish),
            (60, 50) => BasicReturn::decode_fields(r).map(|m| Method::BasicReturn(Box::new(m))),
            (60, 60) => BasicDeliver::decode_fields(r).map(|m| Method::BasicDeliver(Box::new(m))),
            (60, 70) => BasicGet::decode_fields(r).map(Method::BasicGet),
            (60, 71) => BasicGetOk::decode_fields(r).map(|m| Method::BasicGetOk(Box::new(m))),
            (60, 72) => BasicGetEmpty::decode_fields(r).map(Method::BasicGetEmpty),
            (60, 80) => BasicAck::decode_fields(r).map(Method::BasicAck),
            (60, 90) => BasicReject::decode_fields(r).map(Method::BasicReject),
            (60, 100) => BasicRecoverAsync::decode_fields(r).map(Method::BasicRecoverAsync),
            (60, 110) => BasicRecover::decode_fields(r).map(Method::BasicRecover),
            (60, 111) => BasicRecoverOk::decode_fields(r).map(Method::BasicRecoverOk),
            (60, 120) => BasicNack::decode_fields(r).map(Method::BasicNack),
            (85, 10) => ConfirmSelect::decode_fields(r).map(Method::ConfirmSelect),
            (85, 11) => ConfirmSelectOk::decode_fields(r).map(Method::ConfirmSelectOk),
            (90, 10) => TxSelect::decode_fields(r).map(Method::TxSelect),
            (90, 11) => TxSelectOk::decode_fields(r).map(Method::TxSelectOk),
            (90, 20) => TxCommit::decode_fields(r).map(Method::TxCommit),
            (90, 21) => TxCommitOk::decode_fields(r).map(Method::TxCommitOk),
            (90, 30) => TxRollback::decode_fields(r).map(Method::TxRollback),
            (90, 31) => TxRollbackOk::decode_fields(r).map(Method::TxRollbackOk),
            _ => return Err(crate::CodecError::UnknownMethod { class_id, method_id }),
        }
        .map_err(syntax(class_id, method_id))?;
        r.finish().map_err(syntax(class_id, method_id))?;
        Ok(m)
    }

    /// Encodes class id, method id and arguments.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.class_id());
        out.put_u16(self.method_id());
        self.encode_args(out);
    }
}

impl MethodArgs for Method {
    fn class_id(&self) -> u16 {
        Method::class_id(self)
    }
    fn method_id(&self) -> u16 {
        Method::method_id(self)
    }
    fn encode_args(&self, out: &mut BytesMut) {
        match self {
            Method::ConnectionStart(m) => m.encode_fields(out),
            Method::ConnectionStartOk(m) => m.encode_fields(out),
            Method::ConnectionSecure(m) => m.encode_fields(out),
            Method::ConnectionSecureOk(m) => m.encode_fields(out),
            Method::ConnectionTune(m) => m.encode_fields(out),
            Method::ConnectionTuneOk(m) => m.encode_fields(out),
            Method::ConnectionOpen(m) => m.encode_fields(out),
            Method::ConnectionOpenOk(m) => m.encode_fields(out),
            Method::ConnectionClose(m) => m.encode_fields(out),
            Method::ConnectionCloseOk(m) => m.encode_fields(out),
            Method::ConnectionBlocked(m) => m.encode_fields(out),
            Method::ConnectionUnblocked(m) => m.encode_fields(out),
            Method::ConnectionUpdateSecret(m) => m.encode_fields(out),
            Method::ConnectionUpdateSecretOk(m) => m.encode_fields(out),
            Method::ChannelOpen(m) => m.encode_fields(out),
            Method::ChannelOpenOk(m) => m.encode_fields(out),
            Method::ChannelFlow(m) => m.encode_fields(out),
            Method::ChannelFlowOk(m) => m.encode_fields(out),
            Method::ChannelClose(m) => m.encode_fields(out),
            Method::ChannelCloseOk(m) => m.encode_fields(out),
            Method::AccessRequest(m) => m.encode_fields(out),
            Method::AccessRequestOk(m) => m.encode_fields(out),
            Method::ExchangeDeclare(m) => m.encode_fields(out),
            Method::ExchangeDeclareOk(m) => m.encode_fields(out),
            Method::ExchangeDelete(m) => m.encode_fields(out),
            Method::ExchangeDeleteOk(m) => m.encode_fields(out),
            Method::ExchangeBind(m) => m.encode_fields(out),
            Method::ExchangeBindOk(m) => m.encode_fields(out),
            Method::ExchangeUnbind(m) => m.encode_fields(out),
            Method::ExchangeUnbindOk(m) => m.encode_fields(out),
            Method::QueueDeclare(m) => m.encode_fields(out),
            Method::QueueDeclareOk(m) => m.encode_fields(out),
            Method::QueueBind(m) => m.encode_fields(out),
            Method::QueueBindOk(m) => m.encode_fields(out),
            Method::QueuePurge(m) => m.encode_fields(out),
            Method::QueuePurgeOk(m) => m.encode_fields(out),
            Method::QueueDelete(m) => m.encode_fields(out),
            Method::QueueDeleteOk(m) => m.encode_fields(out),
            Method::QueueUnbind(m) => m.encode_fields(out),
            Method::QueueUnbindOk(m) => m.encode_fields(out),
            Method::BasicQos(m) => m.encode_fields(out),
            Method::BasicQosOk(m) => m.encode_fields(out),
            Method::BasicConsume(m) => m.encode_fields(out),
            Method::BasicConsumeOk(m) => m.encode_fields(out),
            Method::BasicCancel(m) => m.encode_fields(out),
            Method::BasicCancelOk(m) => m.encode_fields(out),
            Method::BasicPublish(m) => m.encode_fields(out),
            Method::BasicReturn(m) => m.encode_fields(out),
            Method::BasicDeliver(m) => m.encode_fields(out),
            Method::BasicGet(m) => m.encode_fields(out),
            Method::BasicGetOk(m) => m.encode_fields(out),
            Method::BasicGetEmpty(m) => m.encode_fields(out),
            Method::BasicAck(m) => m.encode_fields(out),
            Method::BasicReject(m) => m.encode_fields(out),
            Method::BasicRecoverAsync(m) => m.encode_fields(out),
            Method::BasicRecover(m) => m.encode_fields(out),
            Method::BasicRecoverOk(m) => m.encode_fields(out),
            Method::BasicNack(m) => m.encode_fields(out),
            Method::ConfirmSelect(m) => m.encode_fields(out),
            Method::ConfirmSelectOk(m) => m.encode_fields(out),
            Method::TxSelect(m) => m.encode_fields(out),
            Method::TxSelectOk(m) => m.encode_fields(out),
            Method::TxCommit(m) => m.encode_fields(out),
            Method::TxCommitOk(m) => m.encode_fields(out),
            Method::TxRollback(m) => m.encode_fields(out),
            Method::TxRollbackOk(m) => m.encode_fields(out),
        }
    }
}

/// `class.method` name for a pair of ids.
pub fn method_name(class_id: u16, method_id: u16) -> Option<&'static str> {
    METHOD_TABLE
        .iter()
        .find(|m| m.class_id == class_id && m.method_id == method_id)
        .map(|m| m.full_name)
}

/// Static description of a method, as in the spec table.
#[derive(Debug, Clone, Copy)]
pub struct MethodSpec {
    pub class_name: &'static str,
    pub class_id: u16,
    pub method_name: &'static str,
    pub method_id: u16,
    pub full_name: &'static str,
    pub synchronous: bool,
    pub content: bool,
    pub responses: &'static str,
    /// (field name, primitive type) in wire order.
    pub fields: &'static [(&'static str, &'static str)],
}

/// Every method, in class then method order.
pub const METHOD_TABLE: &[MethodSpec] = &[
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "start",
        method_id: 10,
        full_name: "connection.start",
        synchronous: true,
        content: false,
        responses: "start-ok",
        fields: &[
            ("version-major", "octet"),
            ("version-minor", "octet"),
            ("server-properties", "table"),
            ("mechanisms", "longstr"),
            ("locales", "longstr"),
        ],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "start-ok",
        method_id: 11,
        full_name: "connection.start-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[
            ("client-properties", "table"),
            ("mechanism", "shortstr"),
            ("response", "longstr"),
            ("locale", "shortstr"),
        ],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "secure",
        method_id: 20,
        full_name: "connection.secure",
        synchronous: true,
        content: false,
        responses: "secure-ok",
        fields: &[("challenge", "longstr")],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "secure-ok",
        method_id: 21,
        full_name: "connection.secure-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("response", "longstr")],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "tune",
        method_id: 30,
        full_name: "connection.tune",
        synchronous: true,
        content: false,
        responses: "tune-ok",
        fields: &[
            ("channel-max", "short"),
            ("frame-max", "long"),
            ("heartbeat", "short"),
        ],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "tune-ok",
        method_id: 31,
        full_name: "connection.tune-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[
            ("channel-max", "short"),
            ("frame-max", "long"),
            ("heartbeat", "short"),
        ],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "open",
        method_id: 40,
        full_name: "connection.open",
        synchronous: true,
        content: false,
        responses: "open-ok",
        fields: &[
            ("virtual-host", "shortstr"),
            ("capabilities", "shortstr"),
            ("insist", "bit"),
        ],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "open-ok",
        method_id: 41,
        full_name: "connection.open-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("known-hosts", "shortstr")],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "close",
        method_id: 50,
        full_name: "connection.close",
        synchronous: true,
        content: false,
        responses: "close-ok",
        fields: &[
            ("reply-code", "short"),
            ("reply-text", "shortstr"),
            ("class-id", "short"),
            ("method-id", "short"),
        ],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "close-ok",
        method_id: 51,
        full_name: "connection.close-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "blocked",
        method_id: 60,
        full_name: "connection.blocked",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("reason", "shortstr")],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "unblocked",
        method_id: 61,
        full_name: "connection.unblocked",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "update-secret",
        method_id: 70,
        full_name: "connection.update-secret",
        synchronous: true,
        content: false,
        responses: "update-secret-ok",
        fields: &[("new-secret", "longstr"), ("reason", "shortstr")],
    },
    MethodSpec {
        class_name: "connection",
        class_id: 10,
        method_name: "update-secret-ok",
        method_id: 71,
        full_name: "connection.update-secret-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "channel",
        class_id: 20,
        method_name: "open",
        method_id: 10,
        full_name: "channel.open",
        synchronous: true,
        content: false,
        responses: "open-ok",
        fields: &[("out-of-band", "shortstr")],
    },
    MethodSpec {
        class_name: "channel",
        class_id: 20,
        method_name: "open-ok",
        method_id: 11,
        full_name: "channel.open-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("channel-id", "longstr")],
    },
    MethodSpec {
        class_name: "channel",
        class_id: 20,
        method_name: "flow",
        method_id: 20,
        full_name: "channel.flow",
        synchronous: true,
        content: false,
        responses: "flow-ok",
        fields: &[("active", "bit")],
    },
    MethodSpec {
        class_name: "channel",
        class_id: 20,
        method_name: "flow-ok",
        method_id: 21,
        full_name: "channel.flow-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("active", "bit")],
    },
    MethodSpec {
        class_name: "channel",
        class_id: 20,
        method_name: "close",
        method_id: 40,
        full_name: "channel.close",
        synchronous: true,
        content: false,
        responses: "close-ok",
        fields: &[
            ("reply-code", "short"),
            ("reply-text", "shortstr"),
            ("class-id", "short"),
            ("method-id", "short"),
        ],
    },
    MethodSpec {
        class_name: "channel",
        class_id: 20,
        method_name: "close-ok",
        method_id: 41,
        full_name: "channel.close-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "access",
        class_id: 30,
        method_name: "request",
        method_id: 10,
        full_name: "access.request",
        synchronous: true,
        content: false,
        responses: "request-ok",
        fields: &[
            ("realm", "shortstr"),
            ("exclusive", "bit"),
            ("passive", "bit"),
            ("active", "bit"),
            ("write", "bit"),
            ("read", "bit"),
        ],
    },
    MethodSpec {
        class_name: "access",
        class_id: 30,
        method_name: "request-ok",
        method_id: 11,
        full_name: "access.request-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("ticket", "short")],
    },
    MethodSpec {
        class_name: "exchange",
        class_id: 40,
        method_name: "declare",
        method_id: 10,
        full_name: "exchange.declare",
        synchronous: true,
        content: false,
        responses: "declare-ok",
        fields: &[
            ("ticket", "short"),
            ("exchange", "shortstr"),
            ("type", "shortstr"),
            ("passive", "bit"),
            ("durable", "bit"),
            ("auto-delete", "bit"),
            ("internal", "bit"),
            ("nowait", "bit"),
            ("arguments", "table"),
        ],
    },
    MethodSpec {
        class_name: "exchange",
        class_id: 40,
        method_name: "declare-ok",
        method_id: 11,
        full_name: "exchange.declare-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "exchange",
        class_id: 40,
        method_name: "delete",
        method_id: 20,
        full_name: "exchange.delete",
        synchronous: true,
        content: false,
        responses: "delete-ok",
        fields: &[
            ("ticket", "short"),
            ("exchange", "shortstr"),
            ("if-unused", "bit"),
            ("nowait", "bit"),
        ],
    },
    MethodSpec {
        class_name: "exchange",
        class_id: 40,
        method_name: "delete-ok",
        method_id: 21,
        full_name: "exchange.delete-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "exchange",
        class_id: 40,
        method_name: "bind",
        method_id: 30,
        full_name: "exchange.bind",
        synchronous: true,
        content: false,
        responses: "bind-ok",
        fields: &[
            ("ticket", "short"),
            ("destination", "shortstr"),
            ("source", "shortstr"),
            ("routing-key", "shortstr"),
            ("nowait", "bit"),
            ("arguments", "table"),
        ],
    },
    MethodSpec {
        class_name: "exchange",
        class_id: 40,
        method_name: "bind-ok",
        method_id: 31,
        full_name: "exchange.bind-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "exchange",
        class_id: 40,
        method_name: "unbind",
        method_id: 40,
        full_name: "exchange.unbind",
        synchronous: true,
        content: false,
        responses: "unbind-ok",
        fields: &[
            ("ticket", "short"),
            ("destination", "shortstr"),
            ("source", "shortstr"),
            ("routing-key", "shortstr"),
            ("nowait", "bit"),
            ("arguments", "table"),
        ],
    },
    MethodSpec {
        class_name: "exchange",
        class_id: 40,
        method_name: "unbind-ok",
        method_id: 51,
        full_name: "exchange.unbind-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "queue",
        class_id: 50,
        method_name: "declare",
        method_id: 10,
        full_name: "queue.declare",
        synchronous: true,
        content: false,
        responses: "declare-ok",
        fields: &[
            ("ticket", "short"),
            ("queue", "shortstr"),
            ("passive", "bit"),
            ("durable", "bit"),
            ("exclusive", "bit"),
            ("auto-delete", "bit"),
            ("nowait", "bit"),
            ("arguments", "table"),
        ],
    },
    MethodSpec {
        class_name: "queue",
        class_id: 50,
        method_name: "declare-ok",
        method_id: 11,
        full_name: "queue.declare-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[
            ("queue", "shortstr"),
            ("message-count", "long"),
            ("consumer-count", "long"),
        ],
    },
    MethodSpec {
        class_name: "queue",
        class_id: 50,
        method_name: "bind",
        method_id: 20,
        full_name: "queue.bind",
        synchronous: true,
        content: false,
        responses: "bind-ok",
        fields: &[
            ("ticket", "short"),
            ("queue", "shortstr"),
            ("exchange", "shortstr"),
            ("routing-key", "shortstr"),
            ("nowait", "bit"),
            ("arguments", "table"),
        ],
    },
    MethodSpec {
        class_name: "queue",
        class_id: 50,
        method_name: "bind-ok",
        method_id: 21,
        full_name: "queue.bind-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "queue",
        class_id: 50,
        method_name: "purge",
        method_id: 30,
        full_name: "queue.purge",
        synchronous: true,
        content: false,
        responses: "purge-ok",
        fields: &[("ticket", "short"), ("queue", "shortstr"), ("nowait", "bit")],
    },
    MethodSpec {
        class_name: "queue",
        class_id: 50,
        method_name: "purge-ok",
        method_id: 31,
        full_name: "queue.purge-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("message-count", "long")],
    },
    MethodSpec {
        class_name: "queue",
        class_id: 50,
        method_name: "delete",
        method_id: 40,
        full_name: "queue.delete",
        synchronous: true,
        content: false,
        responses: "delete-ok",
        fields: &[
            ("ticket", "short"),
            ("queue", "shortstr"),
            ("if-unused", "bit"),
            ("if-empty", "bit"),
            ("nowait", "bit"),
        ],
    },
    MethodSpec {
        class_name: "queue",
        class_id: 50,
        method_name: "delete-ok",
        method_id: 41,
        full_name: "queue.delete-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("message-count", "long")],
    },
    MethodSpec {
        class_name: "queue",
        class_id: 50,
        method_name: "unbind",
        method_id: 50,
        full_name: "queue.unbind",
        synchronous: true,
        content: false,
        responses: "unbind-ok",
        fields: &[
            ("ticket", "short"),
            ("queue", "shortstr"),
            ("exchange", "shortstr"),
            ("routing-key", "shortstr"),
            ("arguments", "table"),
        ],
    },
    MethodSpec {
        class_name: "queue",
        class_id: 50,
        method_name: "unbind-ok",
        method_id: 51,
        full_name: "queue.unbind-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "qos",
        method_id: 10,
        full_name: "basic.qos",
        synchronous: true,
        content: false,
        responses: "qos-ok",
        fields: &[
            ("prefetch-size", "long"),
            ("prefetch-count", "short"),
            ("global", "bit"),
        ],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "qos-ok",
        method_id: 11,
        full_name: "basic.qos-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "consume",
        method_id: 20,
        full_name: "basic.consume",
        synchronous: true,
        content: false,
        responses: "consume-ok",
        fields: &[
            ("ticket", "short"),
            ("queue", "shortstr"),
            ("consumer-tag", "shortstr"),
            ("no-local", "bit"),
            ("no-ack", "bit"),
            ("exclusive", "bit"),
            ("nowait", "bit"),
            ("arguments", "table"),
        ],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "consume-ok",
        method_id: 21,
        full_name: "basic.consume-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("consumer-tag", "shortstr")],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "cancel",
        method_id: 30,
        full_name: "basic.cancel",
        synchronous: true,
        content: false,
        responses: "cancel-ok",
        fields: &[("consumer-tag", "shortstr"), ("nowait", "bit")],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "cancel-ok",
        method_id: 31,
        full_name: "basic.cancel-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("consumer-tag", "shortstr")],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "publish",
        method_id: 40,
        full_name: "basic.publish",
        synchronous: false,
        content: true,
        responses: "",
        fields: &[
            ("ticket", "short"),
            ("exchange", "shortstr"),
            ("routing-key", "shortstr"),
            ("mandatory", "bit"),
            ("immediate", "bit"),
        ],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "return",
        method_id: 50,
        full_name: "basic.return",
        synchronous: false,
        content: true,
        responses: "",
        fields: &[
            ("reply-code", "short"),
            ("reply-text", "shortstr"),
            ("exchange", "shortstr"),
            ("routing-key", "shortstr"),
        ],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "deliver",
        method_id: 60,
        full_name: "basic.deliver",
        synchronous: false,
        content: true,
        responses: "",
        fields: &[
            ("consumer-tag", "shortstr"),
            ("delivery-tag", "longlong"),
            ("redelivered", "bit"),
            ("exchange", "shortstr"),
            ("routing-key", "shortstr"),
        ],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "get",
        method_id: 70,
        full_name: "basic.get",
        synchronous: true,
        content: false,
        responses: "get-ok,get-empty",
        fields: &[("ticket", "short"), ("queue", "shortstr"), ("no-ack", "bit")],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "get-ok",
        method_id: 71,
        full_name: "basic.get-ok",
        synchronous: false,
        content: true,
        responses: "",
        fields: &[
            ("delivery-tag", "longlong"),
            ("redelivered", "bit"),
            ("exchange", "shortstr"),
            ("routing-key", "shortstr"),
            ("message-count", "long"),
        ],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "get-empty",
        method_id: 72,
        full_name: "basic.get-empty",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("cluster-id", "shortstr")],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "ack",
        method_id: 80,
        full_name: "basic.ack",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("delivery-tag", "longlong"), ("multiple", "bit")],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "reject",
        method_id: 90,
        full_name: "basic.reject",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("delivery-tag", "longlong"), ("requeue", "bit")],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "recover-async",
        method_id: 100,
        full_name: "basic.recover-async",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[("requeue", "bit")],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "recover",
        method_id: 110,
        full_name: "basic.recover",
        synchronous: true,
        content: false,
        responses: "recover-ok",
        fields: &[("requeue", "bit")],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "recover-ok",
        method_id: 111,
        full_name: "basic.recover-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "basic",
        class_id: 60,
        method_name: "nack",
        method_id: 120,
        full_name: "basic.nack",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[
            ("delivery-tag", "longlong"),
            ("multiple", "bit"),
            ("requeue", "bit"),
        ],
    },
    MethodSpec {
        class_name: "confirm",
        class_id: 85,
        method_name: "select",
        method_id: 10,
        full_name: "confirm.select",
        synchronous: true,
        content: false,
        responses: "select-ok",
        fields: &[("nowait", "bit")],
    },
    MethodSpec {
        class_name: "confirm",
        class_id: 85,
        method_name: "select-ok",
        method_id: 11,
        full_name: "confirm.select-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "tx",
        class_id: 90,
        method_name: "select",
        method_id: 10,
        full_name: "tx.select",
        synchronous: true,
        content: false,
        responses: "select-ok",
        fields: &[],
    },
    MethodSpec {
        class_name: "tx",
        class_id: 90,
        method_name: "select-ok",
        method_id: 11,
        full_name: "tx.select-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "tx",
        class_id: 90,
        method_name: "commit",
        method_id: 20,
        full_name: "tx.commit",
        synchronous: true,
        content: false,
        responses: "commit-ok",
        fields: &[],
    },
    MethodSpec {
        class_name: "tx",
        class_id: 90,
        method_name: "commit-ok",
        method_id: 21,
        full_name: "tx.commit-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
    MethodSpec {
        class_name: "tx",
        class_id: 90,
        method_name: "rollback",
        method_id: 30,
        full_name: "tx.rollback",
        synchronous: true,
        content: false,
        responses: "rollback-ok",
        fields: &[],
    },
    MethodSpec {
        class_name: "tx",
        class_id: 90,
        method_name: "rollback-ok",
        method_id: 31,
        full_name: "tx.rollback-ok",
        synchronous: false,
        content: false,
        responses: "",
        fields: &[],
    },
];
