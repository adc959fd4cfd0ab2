package routerostest

// kind is how a property's value is checked and normalized.
type kind int

const (
	kindString kind = iota
	kindBool        // yes/no/true/false in, true/false out
	kindInt
	kindRef     // must name a row of refPath, or be one of refExtra
	kindAddress // an IPv4 address, with or without /prefix
)

// prop is one property of a menu. Builders below keep the menu tables in
// menus.go one line per property.
type prop struct {
	name      string
	kind      kind
	dflt      string // printed when the row has no value, if hasDflt
	hasDflt   bool
	readOnly  bool // printed, never accepted from a client
	writeOnly bool // accepted, never printed (passwords)
	required  bool // add fails without it
	refPath   string
	refExtra  []string
	from, to  version // present in [from, to); zero means unbounded
	hide      string  // a value printed as absent (dns static type=A)
}

func str(name string) prop     { return prop{name: name} }
func boolean(name string) prop { return prop{name: name, kind: kindBool} }
func integer(name string) prop { return prop{name: name, kind: kindInt} }
func addr(name string) prop    { return prop{name: name, kind: kindAddress} }
func ref(name, path string, extra ...string) prop {
	return prop{name: name, kind: kindRef, refPath: path, refExtra: extra}
}

func (p prop) d(value string) prop      { p.dflt, p.hasDflt = value, true; return p }
func (p prop) ro() prop                 { p.readOnly = true; return p }
func (p prop) wo() prop                 { p.writeOnly = true; return p }
func (p prop) req() prop                { p.required = true; return p }
func (p prop) since(x version) prop     { p.from = x; return p }
func (p prop) until(x version) prop     { p.to = x; return p }
func (p prop) hidden(value string) prop { p.hide = value; return p }

// in reports whether the property exists in release x.
func (p prop) in(x version) bool {
	return (p.from.zero() || x.atLeast(p.from)) && (p.to.zero() || !x.atLeast(p.to))
}

// menu is one API path with its properties and RouterOS's rules for it.
type menu struct {
	path  string
	props []prop
	// nameKey names a row and may stand in for its .id in =.id= and
	// =numbers= (the manual: "Addressing entries").
	nameKey string
	// unique lists property groups whose values two rows may not share.
	unique [][]string
	dupMsg string
	// commands beyond print and getall.
	commands map[string]bool
	// singleton menus have one row and no .id (/system/identity).
	singleton bool
	// ordered menus accept place-before on add.
	ordered bool
	// group shares an id counter and a name space between menus:
	// /interface and every interface type.
	group string
	// ifType is the /interface type of rows in an interface menu.
	ifType string
	// autoName names a row added without nameKey ("dhcp" -> dhcp1).
	autoName string
	// dynamicSet is the trap for changing a dynamic row; removeDynamic
	// says whether removing one is allowed (dynamic leases can be).
	dynamicSet    func() *trap
	removeDynamic bool
	// derive fills read-only values computed from the others.
	derive func(s *store, vals map[string]string)
}

// prop returns the named property of the menu.
func (m *menu) prop(name string) (prop, bool) {
	for _, p := range m.props {
		if p.name == name {
			return p, true
		}
	}
	return prop{}, false
}

// cmds builds a command set.
func cmds(names ...string) map[string]bool {
	c := make(map[string]bool, len(names))
	for _, n := range names {
		c[n] = true
	}
	return c
}
