//! Many connections open on one server at once, each echoing.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{listen, within};
use tokio::sync::Barrier;
use weft::{CloseCode, Message};

const CLIENTS: usize = 1000;
const MESSAGES: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_connections_each_echo() {
    let (listener, addr) = listen().await;
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    {
        let (open, peak, served) = (open.clone(), peak.clone(), served.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (open, peak, served) = (open.clone(), peak.clone(), served.clone());
                tokio::spawn(async move {
                    let Ok(mut ws) = weft::accept(tcp).await else { return };
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    while let Some(Ok(msg)) = ws.recv().await {
                        served.fetch_add(1, Ordering::SeqCst);
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }

    // Every client connects, then waits until all are connected, so the
    // server holds all of them open at the same time.
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut tasks = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut ws = weft::connect(&format!("ws://{addr}/")).await.unwrap();
            barrier.wait().await;
            for j in 0..MESSAGES {
                let m = if j.is_multiple_of(2) {
                    Message::from(format!("client {i} message {j}"))
                } else {
                    Message::from(vec![i as u8, (i >> 8) as u8, j as u8])
                };
                ws.send(m.clone()).await.unwrap();
                assert_eq!(ws.recv().await.unwrap().unwrap(), m);
            }
            // Wait for everyone before closing, so no connection ends early.
            barrier.wait().await;
            ws.close(CloseCode::NORMAL, "").await.unwrap();
        }));
    }
    for t in tasks {
        within("client task", t).await.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), CLIENTS, "all connections open at once");
    assert_eq!(served.load(Ordering::SeqCst), CLIENTS * MESSAGES);
    // Every server task saw its client's close and ended.
    within("server tasks to end", async {
        while open.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
}
