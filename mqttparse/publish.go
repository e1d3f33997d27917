package mqttparse

// publish decodes a PUBLISH body: topic name, packet identifier when
// QoS > 0 (also for the invalid QoS 3), 5.0 properties, payload. It is the
// probe's hot path and allocates nothing.
func (d *decoder) publish(b []byte) error {
	p := d.p
	h := &p.Header
	if h.Dup && h.QoS == 0 {
		d.v |= ViolationDupQoS0
	}
	topic, off, err := readBinary(b, 0)
	if err != nil {
		return d.fail("topic name", 0, err)
	}
	p.Topic = topic
	if len(topic) == 0 || !plainTopic(topic) { // slow path: find out what is wrong
		if !topicNameValid(topic) {
			d.v |= ViolationTopic
		}
		if !utf8Check(topic) {
			d.v |= ViolationInvalidUTF8
		}
	}
	if h.QoS > 0 {
		if off, err = d.packetID(b, off); err != nil {
			return err
		}
	}
	if d.ver == Version5 {
		if off, err = d.decodeProperties(b, off, int(Publish), &p.Properties); err != nil {
			return err
		}
		if len(topic) == 0 && p.Properties.Has(PropTopicAlias) {
			d.v &^= ViolationTopic // an empty topic name is fine with an alias [MQTT-3.3.2-8]
		}
	}
	p.Payload = b[off:]
	return nil
}

// topicNameValid: not empty and without wildcards [MQTT-4.7.3-1], [MQTT-3.3.2-2].
func topicNameValid(t []byte) bool {
	if len(t) == 0 {
		return false
	}
	for _, c := range t {
		if c == '+' || c == '#' {
			return false
		}
	}
	return true
}

// publishFast decodes a 3.x PUBLISH in which nothing is unusual. It returns
// false, having changed nothing but p.Header, when anything needs a closer
// look (violations, errors), and the caller takes the general path.
func publishFast(body []byte, v Version, p *Packet) bool {
	h := &p.Header
	if h.NonMinimal || h.QoS == 3 || (h.Dup && h.QoS == 0) || len(body) < 2 {
		return false
	}
	off := 2 + (int(body[0])<<8 | int(body[1]))
	if off == 2 || off > len(body) {
		return false
	}
	topic := body[2:off:off]
	if !plainTopic(topic) {
		return false
	}
	var id uint16
	if h.QoS > 0 {
		if off+2 > len(body) {
			return false
		}
		if id = uint16(body[off])<<8 | uint16(body[off+1]); id == 0 {
			return false
		}
		off += 2
	}
	p.reset()
	p.Version = v
	p.PacketID = id
	p.Topic = topic
	p.Payload = body[off:]
	return true
}
