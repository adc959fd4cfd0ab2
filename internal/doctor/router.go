package doctor

import (
	"context"
	"fmt"

	"github.com/bootstrapd/bootstrapd/internal/daemon"
	"github.com/bootstrapd/bootstrapd/internal/routeros"
)

// CheckRouter logs in to the router the way the daemon will and asks its
// RouterOS version: the address, the certificate pin or CA, the user and
// the password all have to be right for that.
func CheckRouter(e *Env) []Result {
	r := e.Site.Router
	if r == nil {
		return nil
	}
	res := Result{Name: "router"}
	conn := routeros.NewConn(daemon.RouterDialer(r))
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), r.TimeoutD)
	defer cancel()
	v, err := conn.Version(ctx)
	if err != nil {
		res.Detail = oneLine(err.Error())
		res.Fix = fmt.Sprintf("check that %s answers api-ssl (or api with insecure), the fingerprint (`bootstrapd router fingerprint`), and user %s's password; a fresh router needs `bootstrapd router bootstrap-script` first", r.API, r.User)
		return []Result{res}
	}
	res.OK = true
	res.Detail = fmt.Sprintf("%s: RouterOS %s, logged in as %s", r.API, v, r.User)
	return []Result{res}
}
