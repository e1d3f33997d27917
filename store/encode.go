package store

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/bsoncodec"
	"go.mongodb.org/mongo-driver/bson/bsonrw"
	"go.mongodb.org/mongo-driver/x/bsonx/bsoncore"

	"github.com/mission-ids/mission/flow"
)

// AppendBSON appends the stored BSON form of d to dst, field by field,
// without reflection (the collector stores hundreds of thousands of flows a
// second; reflection-based encoding was half of its CPU). The result is
// what bson.Marshal gives for flow.Document's struct tags (ipfixFields
// sorted by name, where the driver follows Go's random map order), except
// that unsigned 64-bit integers, which BSON lacks, are written as the int64
// with the same bits: values up to 2^63−1 are unchanged (the probe's flow
// ids stay below), larger ones read back negative (add 2^64 to recover
// them), and all stay distinct. A CoAP document (Document.IsCoAP) is
// written as bson.Marshal writes its flow.CoAPDocument (Document.CoAPView):
// no mqtt* field but the correlation fields of a case key.
func AppendBSON(dst []byte, d *flow.Document) ([]byte, error) {
	idx, dst := bsoncore.AppendDocumentStart(dst)
	str := func(k, v string, omitEmpty bool) {
		if v != "" || !omitEmpty {
			dst = bsoncore.AppendStringElement(dst, k, v)
		}
	}
	i32 := func(k string, v int32) { dst = bsoncore.AppendInt32Element(dst, k, v) }
	i64 := func(k string, v int64) { dst = bsoncore.AppendInt64Element(dst, k, v) }
	date := func(k string, t time.Time) { dst = bsoncore.AppendDateTimeElement(dst, k, bsonMillis(t)) }

	str("_id", d.ID, true)
	str("sourceIPv4Address", d.SourceIPv4Address, true)
	str("destinationIPv4Address", d.DestinationIPv4Address, true)
	str("sourceIPv6Address", d.SourceIPv6Address, true)
	str("destinationIPv6Address", d.DestinationIPv6Address, true)
	i32("sourceTransportPort", int32(d.SourceTransportPort))
	i32("destinationTransportPort", int32(d.DestinationTransportPort))
	i32("protocol", int32(d.Protocol))
	date("flowStartNanoseconds", d.FlowStart)
	date("flowEndNanoseconds", d.FlowEnd)
	i64("flowStartNs", d.FlowStartNs)
	i64("flowEndNs", d.FlowEndNs)
	i64("flowDurationMicroseconds", d.FlowDurationMicroseconds)
	i64("packetDeltaCount", int64(d.PacketDeltaCount))
	i64("octetDeltaCount", int64(d.OctetDeltaCount))
	str("flowEndReason", d.FlowEndReason, false)
	if d.FlowID != 0 {
		i64("flowId", int64(d.FlowID))
	}
	str("applicationProtocol", d.ApplicationProtocol, true)
	if d.IsCoAP() {
		// A CoAP document: its fields instead of the MQTT ones, then the
		// correlation fields of its case key, in the order of
		// flow.CoAPDocument.
		dst = appendCoAP(dst, &d.CoAPFields)
		if d.MQTTCorrelationData != "" {
			dst = bsoncore.AppendStringElement(dst, "mqttCorrelationData", d.MQTTCorrelationData)
		}
		if len(d.MQTTCorrelationDataRaw) > 0 {
			dst = bsoncore.AppendBinaryElement(dst, "mqttCorrelationDataRaw", 0, d.MQTTCorrelationDataRaw)
		}
		if d.MQTTCorrelationSource != "" {
			dst = bsoncore.AppendStringElement(dst, "mqttCorrelationSource", d.MQTTCorrelationSource)
		}
	} else {
		var err error
		if dst, err = appendMQTT(dst, d); err != nil {
			return nil, err
		}
	}
	if len(d.IPFIXFields) > 0 {
		// Sorted by name: the same record always gives the same bytes.
		keys := make([]string, 0, len(d.IPFIXFields))
		for k := range d.IPFIXFields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fields := make(bson.D, len(keys))
		for i, k := range keys {
			fields[i] = bson.E{Key: k, Value: d.IPFIXFields[k]}
		}
		raw, err := marshalFields(fields)
		if err != nil {
			return nil, fmt.Errorf("ipfixFields: %w", err)
		}
		dst = bsoncore.AppendDocumentElement(dst, "ipfixFields", raw)
	}
	str("exporterAddress", d.ExporterAddress, true)
	i64("observationDomainId", int64(d.ObservationDomainID))
	if d.CollectorReceiveTime != nil {
		date("collectorReceiveTime", *d.CollectorReceiveTime)
	}
	return bsoncore.AppendDocumentEnd(dst, idx)
}

// bsonMillis converts like the driver's time.Time encoder does.
func bsonMillis(t time.Time) int64 {
	return t.Unix()*1e3 + int64(t.Nanosecond()/1e6)
}

func arrayKey(i int) string {
	if i < len(smallKeys) {
		return smallKeys[i]
	}
	return fmt.Sprint(i)
}

var smallKeys = func() [64]string {
	var k [64]string
	for i := range k {
		k[i] = fmt.Sprint(i)
	}
	return k
}()

// fieldRegistry is the BSON registry of the free-form documents (a
// third-party flow's ipfixFields, quarantined records): uint64 values are
// written as int64 with the same bits, IP addresses and MAC addresses as
// their text (the driver would write a netip.Addr as an empty document).
var fieldRegistry = func() *bsoncodec.Registry {
	reg := bson.NewRegistry()
	reg.RegisterKindEncoder(reflect.Uint64, bsoncodec.ValueEncoderFunc(
		func(_ bsoncodec.EncodeContext, vw bsonrw.ValueWriter, v reflect.Value) error {
			return vw.WriteInt64(int64(v.Uint()))
		}))
	reg.RegisterTypeEncoder(reflect.TypeOf(netip.Addr{}), bsoncodec.ValueEncoderFunc(
		func(_ bsoncodec.EncodeContext, vw bsonrw.ValueWriter, v reflect.Value) error {
			return vw.WriteString(v.Interface().(netip.Addr).String())
		}))
	reg.RegisterTypeEncoder(reflect.TypeOf(net.HardwareAddr{}), bsoncodec.ValueEncoderFunc(
		func(_ bsoncodec.EncodeContext, vw bsonrw.ValueWriter, v reflect.Value) error {
			return vw.WriteString(v.Interface().(net.HardwareAddr).String())
		}))
	return reg
}()

// marshalFields encodes a free-form document with fieldRegistry.
func marshalFields(v any) (bson.Raw, error) { return bson.MarshalWithRegistry(fieldRegistry, v) }

// appendCoAP appends the CoAP fields that are set (they are all omitted
// when empty).
func appendCoAP(dst []byte, c *flow.CoAPFields) []byte {
	str := func(k, v string) {
		if v != "" {
			dst = bsoncore.AppendStringElement(dst, k, v)
		}
	}
	u16 := func(k string, v *uint16) {
		if v != nil {
			dst = bsoncore.AppendInt32Element(dst, k, int32(*v))
		}
	}
	u32 := func(k string, v *uint32) {
		if v != nil {
			dst = bsoncore.AppendInt64Element(dst, k, int64(*v))
		}
	}
	str("coapType", c.CoAPType)
	str("coapCode", c.CoAPCode)
	str("coapMethod", c.CoAPMethod)
	u16("coapMessageId", c.CoAPMessageID)
	str("coapToken", c.CoAPToken)
	str("coapUriHost", c.CoAPURIHost)
	str("coapUriPath", c.CoAPURIPath)
	str("coapUriQuery", c.CoAPURIQuery)
	u16("coapContentFormat", c.CoAPContentFormat)
	str("coapResponseCode", c.CoAPResponseCode)
	u32("coapObserve", c.CoAPObserve)
	str("coapBlock", c.CoAPBlock)
	str("coapBlockOption", c.CoAPBlockOption)
	u32("coapRetransmissions", c.CoAPRetransmissions)
	u32("coapPayloadLength", c.CoAPPayloadLength)
	return dst
}

// appendMQTT appends the fields of an MQTT (or third-party) document,
// then its CoAP fields if any are set.
func appendMQTT(dst []byte, d *flow.Document) ([]byte, error) {
	str := func(k, v string, omitEmpty bool) {
		if v != "" || !omitEmpty {
			dst = bsoncore.AppendStringElement(dst, k, v)
		}
	}
	i32 := func(k string, v int32) { dst = bsoncore.AppendInt32Element(dst, k, v) }
	i64 := func(k string, v int64) { dst = bsoncore.AppendInt64Element(dst, k, v) }
	str("mqttTopic", d.MQTTTopic, false)
	i32("mqttPacketId", int32(d.MQTTPacketID))
	i32("mqttQoS", int32(d.MQTTQoS))
	i32("mqttControlType", int32(d.MQTTControlType))
	str("mqttControlTypeName", d.MQTTControlTypeName, false)
	str("mqttSrcClientId", d.MQTTSrcClientID, false)
	str("mqttDstClientId", d.MQTTDstClientID, false)
	str("mqttCorrelationData", d.MQTTCorrelationData, false)
	if len(d.MQTTCorrelationDataRaw) > 0 {
		dst = bsoncore.AppendBinaryElement(dst, "mqttCorrelationDataRaw", 0, d.MQTTCorrelationDataRaw)
	}
	str("mqttCorrelationSource", d.MQTTCorrelationSource, false)
	if d.MQTTProtocolVersion != 0 {
		i32("mqttProtocolVersion", int32(d.MQTTProtocolVersion))
	}
	if d.MQTTReasonCode != nil {
		i32("mqttReasonCode", int32(*d.MQTTReasonCode))
	}
	dst = bsoncore.AppendBooleanElement(dst, "mqttRetain", d.MQTTRetain)
	dst = bsoncore.AppendBooleanElement(dst, "mqttDup", d.MQTTDup)
	i64("mqttPayloadLength", int64(d.MQTTPayloadLength))
	if len(d.MQTTTopicFilters) > 0 {
		var aidx int32
		aidx, dst = bsoncore.AppendArrayElementStart(dst, "mqttTopicFilters")
		for i, f := range d.MQTTTopicFilters {
			dst = bsoncore.AppendStringElement(dst, arrayKey(i), f)
		}
		var err error
		if dst, err = bsoncore.AppendArrayEnd(dst, aidx); err != nil {
			return nil, err
		}
	}
	str("mqttResponseTopic", d.MQTTResponseTopic, true)
	str("mqttUsername", d.MQTTUsername, true)
	str("mqttIdentitySource", d.MQTTIdentitySource, true)
	if len(d.MQTTAnomalies) > 0 {
		var aidx int32
		aidx, dst = bsoncore.AppendArrayElementStart(dst, "mqttAnomalies")
		for i, n := range d.MQTTAnomalies {
			dst = bsoncore.AppendStringElement(dst, arrayKey(i), n)
		}
		var err error
		if dst, err = bsoncore.AppendArrayEnd(dst, aidx); err != nil {
			return nil, fmt.Errorf("mqttAnomalies: %w", err)
		}
	}
	// An MQTT document's CoAP fields are empty (all omitted) unless a
	// caller set them: write what is there, as bson.Marshal would.
	return appendCoAP(dst, &d.CoAPFields), nil
}
