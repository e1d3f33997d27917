package mqttparse

// pubAck decodes PUBACK, PUBREC, PUBREL and PUBCOMP: packet identifier and,
// in 5.0, an optional reason code (absent ⇒ Success) and optional properties.
func (d *decoder) pubAck(b []byte) error {
	off, err := d.packetID(b, 0)
	if err != nil {
		return err
	}
	if d.ver != Version5 {
		if off != len(b) {
			d.v |= ViolationTrailingBytes
		}
		return nil
	}
	return d.reasonAndProperties(b, off)
}

// disconnect decodes a DISCONNECT (or 5.0 AUTH) body: nothing before 5.0;
// in 5.0 an optional reason code and optional properties.
func (d *decoder) disconnect(b []byte) error {
	if d.ver != Version5 {
		if len(b) != 0 {
			d.v |= ViolationTrailingBytes
		}
		return nil
	}
	return d.reasonAndProperties(b, 0)
}

// reasonAndProperties reads the optional 5.0 reason code and property block
// that end PUBACK…PUBCOMP, DISCONNECT and AUTH.
func (d *decoder) reasonAndProperties(b []byte, off int) error {
	if off == len(b) {
		return nil // reason code Success, no properties
	}
	rc, off, err := readByte(b, off)
	if err != nil {
		return d.fail("reason code", off, err)
	}
	d.p.ReasonCode = ReasonCode(rc)
	d.reason(d.p.ReasonCode)
	if off == len(b) {
		return nil
	}
	if off, err = d.decodeProperties(b, off, int(d.t), &d.p.Properties); err != nil {
		return err
	}
	if off != len(b) {
		d.v |= ViolationTrailingBytes
	}
	return nil
}
