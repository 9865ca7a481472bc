//! Which TCP ports something on this host listens on: the agent keeps
//! them out of the host ports it offers for tasks. Behind a small trait so
//! that tests, and hosts that are not this machine (the simulated runtime's
//! instances), can answer for themselves.

use std::collections::BTreeSet;

/// The TCP ports listened on by anything on the host.
pub trait HostPorts: Send + Sync + std::fmt::Debug {
    /// Every TCP port in the LISTEN state, on any address, IPv4 or IPv6.
    fn listening_tcp_ports(&self) -> std::io::Result<BTreeSet<u16>>;
}

/// This machine's listening sockets, from `/proc/net/tcp` and
/// `/proc/net/tcp6` (Linux). Docker's port proxies show up there too, so a
/// port published by another agent's container counts as held.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcNetTcp;

impl HostPorts for ProcNetTcp {
    fn listening_tcp_ports(&self) -> std::io::Result<BTreeSet<u16>> {
        let mut ports = BTreeSet::new();
        let mut read_any = false;
        let mut last_error = None;
        for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    read_any = true;
                    ports.extend(listening_ports(&text));
                }
                // A host without IPv6 has no tcp6 table.
                Err(err) => last_error = Some(err),
            }
        }
        match (read_any, last_error) {
            (false, Some(err)) => Err(err),
            _ => Ok(ports),
        }
    }
}

/// No port is held: for hosts whose ports are not this machine's.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHostPorts;

impl HostPorts for NoHostPorts {
    fn listening_tcp_ports(&self) -> std::io::Result<BTreeSet<u16>> {
        Ok(BTreeSet::new())
    }
}

/// A fixed, changeable set of held ports (tests).
#[derive(Debug, Default)]
pub struct FixedHostPorts(parking_lot::Mutex<BTreeSet<u16>>);

impl FixedHostPorts {
    pub fn new(ports: impl IntoIterator<Item = u16>) -> Self {
        Self(parking_lot::Mutex::new(ports.into_iter().collect()))
    }

    pub fn set(&self, ports: impl IntoIterator<Item = u16>) {
        *self.0.lock() = ports.into_iter().collect();
    }
}

impl HostPorts for FixedHostPorts {
    fn listening_tcp_ports(&self) -> std::io::Result<BTreeSet<u16>> {
        Ok(self.0.lock().clone())
    }
}

/// The ports of the LISTEN sockets (state `0A`) of a `/proc/net/tcp` or
/// `/proc/net/tcp6` table. Lines that do not parse are skipped.
pub fn listening_ports(table: &str) -> impl Iterator<Item = u16> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != "0A" {
            return None;
        }
        let (_, port) = local.rsplit_once(':')?;
        u16::from_str_radix(port, 16).ok()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2508 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:C001 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:C002 0100007F:2508 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: garbage
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:C003 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn only_listening_sockets_count() {
        let ports: Vec<u16> = listening_ports(TCP).collect();
        // 9480 and 49153 listen; 49154 is an established connection.
        assert_eq!(ports, [9480, 49153]);
        assert_eq!(listening_ports(TCP6).collect::<Vec<_>>(), [49155]);
        assert_eq!(listening_ports("").count(), 0);
    }

    #[test]
    fn this_machine_shows_a_socket_it_listens_on() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ports = ProcNetTcp.listening_tcp_ports().unwrap();
        assert!(ports.contains(&port), "{port} not in {ports:?}");
        drop(listener);
    }

    #[test]
    fn the_fixed_set_answers_what_it_was_given() {
        let fixed = FixedHostPorts::new([49153]);
        assert_eq!(
            fixed.listening_tcp_ports().unwrap(),
            BTreeSet::from([49153])
        );
        fixed.set([]);
        assert!(fixed.listening_tcp_ports().unwrap().is_empty());
        assert!(NoHostPorts.listening_tcp_ports().unwrap().is_empty());
    }
}
