package profile

import (
	"errors"
	"strings"
	"text/template"

	"github.com/bootstrapd/bootstrapd/internal/hclq"
)

// funcs are the functions every profile template (command line and files)
// can call. Templates put node data (labels especially, which the operator
// types) into shell files the installer sources and into HCL, so each
// target language gets its own quoting function instead of ad hoc escaping
// in the template.
func funcs() template.FuncMap {
	return template.FuncMap{"shq": shq, "hclq": hclq.Quote}
}

// shq quotes s as one POSIX shell word that is inert when the file holding it
// is sourced or run: inside single quotes nothing is special (no $, no
// backticks, no backslash escapes, newlines included), so the only thing to
// handle is the single quote itself: close the quotes, add an escaped quote,
// reopen. So it's becomes
//
//	'it'\''s'
//
// A NUL byte cannot live in a shell variable at all, so it is an error
// rather than a silently shortened value.
func shq(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", errors.New("shq: a NUL byte cannot be part of a shell word")
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}
