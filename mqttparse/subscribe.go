package mqttparse

// subscribe decodes a SUBSCRIBE body: packet identifier, 5.0 properties,
// then topic filters each followed by an options byte, to the end.
func (d *decoder) subscribe(b []byte) error {
	p := d.p
	off, err := d.packetID(b, 0)
	if err != nil {
		return err
	}
	if d.ver == Version5 {
		if off, err = d.decodeProperties(b, off, int(Subscribe), &p.Properties); err != nil {
			return err
		}
	}
	if off == len(b) {
		d.v |= ViolationEmptyList // [MQTT-3.8.3-2]
	}
	for off < len(b) {
		var s Subscription
		if s.Filter, off, err = d.utf8(b, off, "topic filter"); err != nil {
			return err
		}
		if s.Options, off, err = readByte(b, off); err != nil {
			return d.fail("subscription options", off, err)
		}
		o := s.Options
		s.QoS = o & 0x03
		if d.ver == Version5 {
			s.NoLocal = o&0x04 != 0
			s.RetainAsPublished = o&0x08 != 0
			s.RetainHandling = (o >> 4) & 0x03
			if o&0xc0 != 0 || s.RetainHandling == 3 || s.QoS == 3 {
				d.v |= ViolationSubscriptionOptions // [MQTT-3.8.3-5]
			}
		} else if o&0xfc != 0 || s.QoS == 3 {
			d.v |= ViolationSubscriptionOptions // [MQTT-3-8.3-4]
		}
		if len(s.Filter) == 0 {
			d.v |= ViolationTopic // [MQTT-4.7.3-1]
		}
		d.addFilter(s)
	}
	return nil
}

// unsubscribe decodes an UNSUBSCRIBE body: packet identifier, 5.0
// properties, then topic filters to the end.
func (d *decoder) unsubscribe(b []byte) error {
	p := d.p
	off, err := d.packetID(b, 0)
	if err != nil {
		return err
	}
	if d.ver == Version5 {
		if off, err = d.decodeProperties(b, off, int(Unsubscribe), &p.Properties); err != nil {
			return err
		}
	}
	if off == len(b) {
		d.v |= ViolationEmptyList // [MQTT-3.10.3-2]
	}
	for off < len(b) {
		var s Subscription
		if s.Filter, off, err = d.utf8(b, off, "topic filter"); err != nil {
			return err
		}
		if len(s.Filter) == 0 {
			d.v |= ViolationTopic
		}
		d.addFilter(s)
	}
	return nil
}

func (d *decoder) addFilter(s Subscription) {
	if len(d.p.Filters) < MaxTopicFilters {
		d.p.Filters = append(d.p.Filters, s)
	} else {
		d.truncated = true
	}
}

// subAck decodes SUBACK and UNSUBACK: packet identifier, 5.0 properties,
// then one reason code per byte to the end. A 3.x UNSUBACK has no codes.
func (d *decoder) subAck(b []byte) error {
	p := d.p
	off, err := d.packetID(b, 0)
	if err != nil {
		return err
	}
	if d.ver == Version5 {
		if off, err = d.decodeProperties(b, off, int(d.t), &p.Properties); err != nil {
			return err
		}
	} else if d.t == Unsuback {
		if off != len(b) {
			d.v |= ViolationTrailingBytes
		}
		return nil
	}
	if off == len(b) {
		d.v |= ViolationEmptyList
	}
	for _, c := range b[off:] {
		d.reason(ReasonCode(c))
		if len(p.ReasonCodes) < MaxReasonCodes {
			p.ReasonCodes = append(p.ReasonCodes, ReasonCode(c))
		} else {
			d.truncated = true
		}
	}
	return nil
}
