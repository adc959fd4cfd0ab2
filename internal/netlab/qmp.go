package netlab

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmpExecute runs one command on a QEMU Machine Protocol socket (QEMU's
// -qmp unix:PATH,server=on,wait=off) and returns its "return" value.
//
// QMP is line-delimited JSON: a greeting, then qmp_capabilities to leave
// negotiation mode, then {"execute": ...} answered by {"return": ...} or
// {"error": ...}, with asynchronous {"event": ...} messages in between,
// which are skipped. A connection per command keeps no state across
// power cycles: each QEMU process has a new socket.
func qmpExecute(ctx context.Context, socket, command string) (json.RawMessage, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("QMP: %w", err)
	}
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	_ = c.SetDeadline(deadline)

	dec := json.NewDecoder(c)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		return nil, fmt.Errorf("QMP: no greeting on %s: %v", socket, err)
	}
	if _, err := qmpCall(c, dec, "qmp_capabilities"); err != nil {
		return nil, err
	}
	return qmpCall(c, dec, command)
}

func qmpCall(c net.Conn, dec *json.Decoder, command string) (json.RawMessage, error) {
	req, _ := json.Marshal(map[string]string{"execute": command})
	if _, err := c.Write(append(req, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", command, err)
	}
	for {
		var msg struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			if command == "quit" {
				// QEMU may close the socket before its answer
				// reaches us: it is going away, as asked.
				return nil, nil
			}
			return nil, fmt.Errorf("QMP %s: no answer: %w", command, err)
		}
		switch {
		case msg.Error != nil:
			return nil, fmt.Errorf("QMP %s: %s: %s", command, msg.Error.Class, msg.Error.Desc)
		case msg.Return != nil:
			return msg.Return, nil
		}
		// An event: keep reading.
	}
}
