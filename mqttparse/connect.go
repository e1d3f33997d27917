package mqttparse

// connect decodes a CONNECT body. The layout follows the packet's own
// protocol level (5 → 5.0, anything else → 3.1.1 layout), not the caller's
// version; p.Version is set to that level when it is 3, 4 or 5.
func (d *decoder) connect(b []byte) error {
	c := &d.p.Connect
	d.p.connectSet = true
	name, off, err := readBinary(b, 0)
	if err != nil {
		return d.fail("protocol name", 0, err)
	}
	c.ProtocolName = name
	if c.ProtocolLevel, off, err = readByte(b, off); err != nil {
		return d.fail("protocol level", off, err)
	}
	switch lvl := Version(c.ProtocolLevel); {
	case lvl == Version31 && string(name) == "MQIsdp",
		(lvl == Version311 || lvl == Version5) && string(name) == "MQTT":
	default:
		d.v |= ViolationProtocolName
	}
	switch Version(c.ProtocolLevel) {
	case Version31, Version311, Version5:
		d.ver = Version(c.ProtocolLevel)
	default:
		if d.ver == VersionUnknown {
			d.ver = Version311
		}
	}
	d.p.Version = d.ver
	if c.Flags, off, err = readByte(b, off); err != nil {
		return d.fail("connect flags", off, err)
	}
	f := c.Flags
	c.CleanStart = f&0x02 != 0
	c.WillFlag = f&0x04 != 0
	c.WillQoS = (f >> 3) & 0x03
	c.WillRetain = f&0x20 != 0
	c.PasswordFlag = f&0x40 != 0
	c.UsernameFlag = f&0x80 != 0
	if f&0x01 != 0 || c.WillQoS == 3 || (!c.WillFlag && (c.WillQoS != 0 || c.WillRetain)) ||
		(d.ver != Version5 && c.PasswordFlag && !c.UsernameFlag) {
		d.v |= ViolationConnectFlags // [MQTT-3.1.2-3], [MQTT-3.1.2-11..14], [MQTT-3.1.2-22]
	}
	if c.KeepAlive, off, err = readUint16(b, off); err != nil {
		return d.fail("keep alive", off, err)
	}
	if d.ver == Version5 {
		if off, err = d.decodeProperties(b, off, int(Connect), &d.p.Properties); err != nil {
			return err
		}
	}
	if c.ClientID, off, err = d.utf8(b, off, "client identifier"); err != nil {
		return err
	}
	if c.WillFlag {
		if d.ver == Version5 {
			if off, err = d.decodeProperties(b, off, willKind, &c.WillProperties); err != nil {
				return err
			}
		}
		if c.WillTopic, off, err = d.utf8(b, off, "will topic"); err != nil {
			return err
		}
		if c.WillPayload, off, err = readBinary(b, off); err != nil {
			return d.fail("will payload", off, err)
		}
	}
	if c.UsernameFlag {
		if c.Username, off, err = d.utf8(b, off, "user name"); err != nil {
			return err
		}
	}
	if c.PasswordFlag {
		var pw []byte
		if pw, off, err = readBinary(b, off); err != nil {
			return d.fail("password", off, err)
		}
		c.PasswordLen = len(pw)
	}
	if off != len(b) {
		d.v |= ViolationTrailingBytes
	}
	return nil
}

// connack decodes a CONNACK body: acknowledge flags, return/reason code and,
// in 5.0, properties.
func (d *decoder) connack(b []byte) error {
	flags, off, err := readByte(b, 0)
	if err != nil {
		return d.fail("acknowledge flags", 0, err)
	}
	if flags&0xfe != 0 {
		d.v |= ViolationConnackFlags // [MQTT-3.2.2-1]
	}
	d.p.SessionPresent = flags&0x01 != 0
	rc, off, err := readByte(b, off)
	if err != nil {
		return d.fail("reason code", off, err)
	}
	d.p.ReasonCode = ReasonCode(rc)
	d.reason(d.p.ReasonCode)
	if d.ver == Version5 {
		if off, err = d.decodeProperties(b, off, int(Connack), &d.p.Properties); err != nil {
			return err
		}
	}
	if off != len(b) {
		d.v |= ViolationTrailingBytes
	}
	return nil
}
