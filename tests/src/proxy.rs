//! A TCP proxy on loopback that a test can cut and restore, to take etcd
//! away from a master without stopping etcd itself.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

use crate::HarnessError;

pub struct Proxy {
    port: u16,
    cut: Arc<Mutex<bool>>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Result<Self, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(HarnessError::io("binding the proxy"))?;
        let port = listener.local_addr().map_err(HarnessError::io("reading the proxy port"))?.port();
        let cut = Arc::new(Mutex::new(false));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let (cut, connections) = (cut.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if *cut.lock().unwrap_or_else(|p| p.into_inner()) {
                        continue; // dropping the stream resets it
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap_or_else(|p| p.into_inner()).push(task.abort_handle());
                }
            })
        };
        Ok(Self { port, cut, connections, accept })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        *self.cut.lock().unwrap_or_else(|p| p.into_inner()) = true;
        for task in self.connections.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        *self.cut.lock().unwrap_or_else(|p| p.into_inner()) = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
