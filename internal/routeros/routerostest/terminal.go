package routerostest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// doOnError is `:do { A } on-error={ B }` with one command on each side.
var doOnError = regexp.MustCompile(`^:do \{ (.*) \} on-error=\{ (.*) \}$`)

// Terminal runs a RouterOS script the way the router's own terminal (or
// netinstall's configure script) would, as far as a stand-in can: each
// command line ("/user add name=x ...", or "interface vlan add ..." from
// the root menu) runs against the configuration as the API command of the
// same name, with the console's quoting; `:do { A } on-error={ B }` runs B
// when A is refused. The rest of the scripting language (:local, :while,
// :put, :log) and /certificate, for which the stand-in has no menu (New
// makes its api-ssl certificate), are not run: they come back in skipped,
// so a test sees what it did not check. Terminal stops at the first
// command the router refuses. Like a console it is no API connection, so
// it meets none of 7.19's dynamic /ip/service rows.
func (r *Router) Terminal(script string) (skipped []string, err error) {
	for n, line := range strings.Split(script, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case doOnError.MatchString(line):
			m := doOnError.FindStringSubmatch(line)
			if err := r.console(m[1]); err != nil {
				if err := r.console(m[2]); err != nil {
					return skipped, fmt.Errorf("line %d: %w", n+1, err)
				}
			}
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "/certificate "):
			skipped = append(skipped, line)
		default:
			if err := r.console(line); err != nil {
				return skipped, fmt.Errorf("line %d: %w", n+1, err)
			}
		}
	}
	return skipped, nil
}

// console runs one console command line.
func (r *Router) console(line string) error {
	words, err := consoleWords(strings.TrimPrefix(line, "/"))
	if err != nil {
		return err
	}
	// The menu path runs up to the first word that is a command of the
	// menu named so far: "user group add" is /user/group add.
	r.mu.Lock()
	cmdAt := -1
	for i := range words {
		if strings.Contains(words[i], "=") {
			break
		}
		if m := r.st.menus["/"+strings.Join(words[:i], "/")]; m != nil && m.commands[words[i]] {
			cmdAt = i
			break
		}
	}
	r.mu.Unlock()
	if cmdAt < 1 {
		return fmt.Errorf("%q: no such command", line)
	}
	api := []string{"/" + strings.Join(words[:cmdAt+1], "/")}
	for _, w := range words[cmdAt+1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			k, v = "numbers", w // `set api-ssl ...`: the item, by name
		}
		v, err := unquoteConsole(v)
		if err != nil {
			return fmt.Errorf("%q: %w", line, err)
		}
		api = append(api, "="+k+"="+v)
	}
	for _, s := range r.run(parseRequest(api)) {
		if s[0] == "!trap" {
			for _, w := range s[1:] {
				if msg, ok := strings.CutPrefix(w, "=message="); ok {
					return fmt.Errorf("%s: %s", strings.Join(words[:cmdAt+1], " "), msg)
				}
			}
			return fmt.Errorf("%s: refused", strings.Join(words[:cmdAt+1], " "))
		}
	}
	return nil
}

// consoleWords splits a command line at spaces outside double quotes,
// keeping the quotes for unquoteConsole.
func consoleWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	quoted, escaped := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && quoted:
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ' ' && !quoted:
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
			continue
		}
		cur.WriteByte(c)
	}
	if quoted {
		return nil, fmt.Errorf("%q: a string that never ends", line)
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	return words, nil
}

// unquoteConsole reads a console value: bare, or a double-quoted string
// whose escapes are \HH (a byte in hex), \n \r \t, \_ (a space), and a
// backslash before any other character for that character ("\"", "\$").
func unquoteConsole(v string) (string, error) {
	if !strings.HasPrefix(v, `"`) {
		return v, nil
	}
	if len(v) < 2 || !strings.HasSuffix(v, `"`) {
		return "", fmt.Errorf("bad string %s", v)
	}
	s := v[1 : len(v)-1]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) {
			return "", fmt.Errorf("bad string %s", v)
		}
		if i+1 < len(s) {
			if x, err := strconv.ParseUint(s[i:i+2], 16, 8); err == nil {
				b.WriteByte(byte(x))
				i++
				continue
			}
		}
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '_':
			b.WriteByte(' ')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}
