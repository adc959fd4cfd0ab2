package routerostest

import "strings"

// request is one sentence from a client, split the way the manual's "API
// sentences" section describes: the command word, =attribute=value words,
// the .tag API attribute, and ?query words (whose order matters).
type request struct {
	word    string
	attrs   []pair
	queries []string
	tag     string
	tagged  bool
	// stray holds words that are none of the above.
	stray []string
}

func parseRequest(words []string) *request {
	req := &request{word: words[0]}
	for _, w := range words[1:] {
		switch {
		case strings.HasPrefix(w, "="):
			// =name=value; the value may be empty or hold more = signs.
			k, v, _ := strings.Cut(w[1:], "=")
			req.attrs = append(req.attrs, pair{k, v})
		case strings.HasPrefix(w, ".tag="):
			req.tag, req.tagged = w[len(".tag="):], true
		case strings.HasPrefix(w, "?"):
			req.queries = append(req.queries, w)
		default:
			req.stray = append(req.stray, w)
		}
	}
	return req
}

// attr returns the first value of an attribute.
func (req *request) attr(name string) (string, bool) {
	for _, a := range req.attrs {
		if a.key == name {
			return a.value, true
		}
	}
	return "", false
}

// withTag puts .tag right after the reply word of each sentence, where
// RouterOS puts it (librouteros docs/api_analysis.rst transcripts).
func (req *request) withTag(sentences [][]string) [][]string {
	if !req.tagged {
		return sentences
	}
	out := make([][]string, len(sentences))
	for i, s := range sentences {
		t := make([]string, 0, len(s)+1)
		t = append(t, s[0], ".tag="+req.tag)
		out[i] = append(t, s[1:]...)
	}
	return out
}
