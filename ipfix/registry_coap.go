package ipfix

// CoAP element ids (enterprise-specific, under the same PEN as the MQTT
// elements), from 100 up: the MQTT ids stay below.
const (
	CoAPType            uint16 = 100 // of the initiating message: 0 CON, 1 NON, 2 ACK, 3 RST
	CoAPCode            uint16 = 101 // of the initiating message: class << 5 | detail
	CoAPMessageID       uint16 = 102
	CoAPToken           uint16 = 103
	CoAPMethod          uint16 = 104 // request's method code (a notification: the registration's); 0 none
	CoAPURIHost         uint16 = 105
	CoAPURIPath         uint16 = 106 // "/a/b"
	CoAPURIQuery        uint16 = 107 // Uri-Query options joined by "&"
	CoAPContentFormat   uint16 = 108 // CoAPAbsent32 when none
	CoAPResponseCode    uint16 = 109 // 0 when no response
	CoAPObserve         uint16 = 110 // CoAPAbsent32 when none
	CoAPBlock           uint16 = 111 // Block1/Block2 option value (num << 4 | more << 3 | szx)
	CoAPBlockOption     uint16 = 112 // 0 none, 1 Block1, 2 Block2
	CoAPRetransmissions uint16 = 113
	CoAPPayloadLength   uint16 = 114
)

// CoAPAbsent32 is sent for a coapContentFormat or coapObserve the flow
// does not have (neither option's value reaches it: 16 and 24 bits).
const CoAPAbsent32 uint32 = 0xFFFFFFFF

const coapFirst = CoAPType

// coapElements is indexed by element id − coapFirst; PEN is filled in by
// the Registry.
var coapElements = [...]InfoElement{
	CoAPType - coapFirst:            {Name: "coapType", ID: CoAPType, Type: TypeUnsigned8},
	CoAPCode - coapFirst:            {Name: "coapCode", ID: CoAPCode, Type: TypeUnsigned8},
	CoAPMessageID - coapFirst:       {Name: "coapMessageId", ID: CoAPMessageID, Type: TypeUnsigned16},
	CoAPToken - coapFirst:           {Name: "coapToken", ID: CoAPToken, Type: TypeOctetArray},
	CoAPMethod - coapFirst:          {Name: "coapMethod", ID: CoAPMethod, Type: TypeUnsigned8},
	CoAPURIHost - coapFirst:         {Name: "coapUriHost", ID: CoAPURIHost, Type: TypeString},
	CoAPURIPath - coapFirst:         {Name: "coapUriPath", ID: CoAPURIPath, Type: TypeString},
	CoAPURIQuery - coapFirst:        {Name: "coapUriQuery", ID: CoAPURIQuery, Type: TypeString},
	CoAPContentFormat - coapFirst:   {Name: "coapContentFormat", ID: CoAPContentFormat, Type: TypeUnsigned32},
	CoAPResponseCode - coapFirst:    {Name: "coapResponseCode", ID: CoAPResponseCode, Type: TypeUnsigned8},
	CoAPObserve - coapFirst:         {Name: "coapObserve", ID: CoAPObserve, Type: TypeUnsigned32},
	CoAPBlock - coapFirst:           {Name: "coapBlock", ID: CoAPBlock, Type: TypeUnsigned32},
	CoAPBlockOption - coapFirst:     {Name: "coapBlockOption", ID: CoAPBlockOption, Type: TypeUnsigned8},
	CoAPRetransmissions - coapFirst: {Name: "coapRetransmissions", ID: CoAPRetransmissions, Type: TypeUnsigned32},
	CoAPPayloadLength - coapFirst:   {Name: "coapPayloadLength", ID: CoAPPayloadLength, Type: TypeUnsigned32},
}

func lookupCoAP(id uint16) (InfoElement, bool) {
	if id >= coapFirst && int(id-coapFirst) < len(coapElements) {
		return coapElements[id-coapFirst], true
	}
	return InfoElement{}, false
}
