//! `aula-forward-bench`: how much SFU-side CPU one forwarded RTP packet costs with `rtc`
//! (configured as the media node configures it), with str0m, and through Aula's real SFU
//! core (`aula_sfu::Sfu`, with `rtc` underneath). One publisher, K subscribers, everything
//! in memory on one thread: ICE, DTLS and SRTP really run; only the sockets are missing.
//! Only the SFU side's calls are timed.

mod harness;
mod rtc_lib;
mod sfu_mode;
mod str0m_lib;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use harness::{Figures, Library, Media, MeterOverhead, Scenario};

#[derive(Parser)]
#[command(
    about = "SFU-side CPU per forwarded RTP packet: rtc (as the node uses it) vs str0m, and the node's SFU core"
)]
struct Args {
    /// RTP packets the publisher sends per run.
    #[arg(long, default_value_t = 20_000)]
    packets: usize,
    /// Video payload bytes per packet.
    #[arg(long, default_value_t = 1_100)]
    payload: usize,
    /// Opus payload bytes per packet (audio runs).
    #[arg(long, default_value_t = 160)]
    audio_payload: usize,
    /// Video packets per frame (a frame every 33 ms).
    #[arg(long, default_value_t = 6)]
    packets_per_frame: usize,
    /// Subscriber counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 10, 29])]
    subscribers: Vec<usize>,
    /// Media to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values = ["video", "audio"])]
    media: Vec<MediaArg>,
    /// What runs the SFU side, comma-separated: the libraries alone (`rtc`, `str0m`: the
    /// RTP written straight to each subscriber's connection), or `sfu`, the node's SFU core
    /// (`aula_sfu::Sfu` on `rtc`: routing, forwarding decisions, header rewrite, fan-out).
    #[arg(long, value_delimiter = ',', default_values = ["rtc", "str0m"])]
    library: Vec<LibraryArg>,
    /// Runs per case, the libraries taking turns (so background load hits both alike);
    /// the table shows the best, median and worst run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MediaArg {
    Video,
    Audio,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LibraryArg {
    Rtc,
    Str0m,
    Sfu,
}

/// All runs of one library on one case, sorted by CPU per forwarded packet.
struct Case {
    library: &'static str,
    media: Media,
    subscribers: usize,
    runs: Vec<Figures>,
}

impl Case {
    fn median(&self) -> &Figures {
        &self.runs[self.runs.len() / 2]
    }
    /// The least disturbed run: background load only ever adds time.
    fn best(&self) -> &Figures {
        &self.runs[0]
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runs = args.runs.max(1);
    let overhead = MeterOverhead::calibrate();
    print_method(&args, runs, overhead);

    let mut cases = Vec::new();
    for media in &args.media {
        let media = match media {
            MediaArg::Video => Media::Video,
            MediaArg::Audio => Media::Audio,
        };
        for &k in &args.subscribers {
            let scenario = Scenario {
                media,
                subscribers: k,
                packets: args.packets,
                payload: if media == Media::Video {
                    args.payload
                } else {
                    args.audio_payload
                },
                packets_per_frame: args.packets_per_frame,
                overhead,
            };
            let mut these: Vec<Case> = args
                .library
                .iter()
                .map(|lib| Case {
                    library: match lib {
                        LibraryArg::Rtc => <rtc_lib::RtcLib as Library>::NAME,
                        LibraryArg::Str0m => <str0m_lib::Str0mLib as Library>::NAME,
                        LibraryArg::Sfu => sfu_mode::NAME,
                    },
                    media,
                    subscribers: k,
                    runs: Vec::new(),
                })
                .collect();
            for _ in 0..runs {
                for (lib, case) in args.library.iter().zip(&mut these) {
                    let f = match lib {
                        LibraryArg::Rtc => measure(&mut rtc_lib::RtcLib::default(), &scenario)?,
                        LibraryArg::Str0m => measure(&mut str0m_lib::Str0mLib, &scenario)?,
                        LibraryArg::Sfu => sfu_mode::run(&scenario).with_context(|| {
                            format!("{} {} K={k}", sfu_mode::NAME, media.name())
                        })?,
                    };
                    case.runs.push(f);
                }
            }
            for case in &mut these {
                case.runs
                    .sort_by(|a, b| a.cpu_per_forwarded().total_cmp(&b.cpu_per_forwarded()));
                print_case(case);
            }
            cases.extend(these);
        }
    }
    println!();
    print_comparison(&cases);
    Ok(())
}

fn measure<L: Library>(lib: &mut L, s: &Scenario) -> Result<Figures> {
    harness::run(lib, s)
        .with_context(|| format!("{} {} K={}", L::NAME, s.media.name(), s.subscribers))
}

fn print_method(args: &Args, runs: usize, overhead: MeterOverhead) {
    let build = if cfg!(debug_assertions) {
        "DEBUG build (figures meaningless)"
    } else {
        "release build"
    };
    println!(
        "In memory (no sockets), one thread, {build}, {}, nproc {}. Per run: one publisher, K \
         subscribers, {} RTP packets (video: {} B payloads, {} per frame every 33 ms of \
         simulated time; audio: {} B every 20 ms). Timed: only the SFU side's calls (datagrams \
         in, RTP out, RTP written per subscriber, datagrams polled, timers), with \
         CLOCK_THREAD_CPUTIME_ID and Instant, minus the meter's own cost per timed block \
         ({} ns CPU, {} ns wall). `aula-sfu`: the node's SFU core (aula_sfu::Sfu on rtc, \
         fan-out on the calling thread) between rtc clients, timed around every call into the \
         Sfu (datagram in, outputs polled, timeouts); fw-path: a publisher's datagram and the \
         outputs polled after it. {runs} runs per case, libraries taking turns; counts and wall \
         time of the median run.",
        cpu_model().unwrap_or_else(|| "CPU unknown".to_owned()),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.packets,
        args.payload,
        args.packets_per_frame,
        args.audio_payload,
        overhead.cpu.as_nanos(),
        overhead.wall.as_nanos(),
    );
    println!();
    println!(
        "{:<10} {:<5} {:>2} {:>7} {:>7} {:>9} {:>9} {:>15} {:>6} {:>22} {:>9} {:>9} {:>21}",
        "library",
        "media",
        "K",
        "SFU rx",
        "SFU in",
        "forwarded",
        "SFU out",
        "delivered/exp.",
        "blk/fw",
        "µs CPU/fw best/med/max",
        "µs wall/fw",
        "µs fw-path",
        "fw pkt/s/core best/med"
    );
}

fn print_case(c: &Case) {
    let f = c.median();
    let (best, median) = (c.best().cpu_per_forwarded(), f.cpu_per_forwarded());
    let worst = c.runs.last().map_or(median, Figures::cpu_per_forwarded);
    let all_delivered = c.runs.iter().all(|r| r.delivered == r.expected);
    println!(
        "{:<10} {:<5} {:>2} {:>7} {:>7} {:>9} {:>9} {:>15} {:>6.2} {:>22} {:>9.2} {:>9.2} {:>21}",
        c.library,
        c.media.name(),
        c.subscribers,
        f.sfu_received,
        f.sfu_datagrams_in,
        f.forwarded,
        f.sfu_datagrams_out,
        format!(
            "{}/{}{}",
            f.delivered,
            f.expected,
            if all_delivered { "" } else { "!" }
        ),
        f.blocks as f64 / f.forwarded as f64,
        format!("{best:.2} / {median:.2} / {worst:.2}"),
        f.wall_per_forwarded(),
        f.forwarding_cpu_per_forwarded(),
        format!("{:.0}k / {:.0}k", 1e3 / best, 1e3 / median),
    );
}

fn print_comparison(cases: &[Case]) {
    let rtc = <rtc_lib::RtcLib as Library>::NAME;
    for s in cases.iter().filter(|c| c.library != rtc) {
        let Some(r) = cases
            .iter()
            .find(|r| r.library == rtc && r.media == s.media && r.subscribers == s.subscribers)
        else {
            continue;
        };
        let (rb, sb) = (r.best().cpu_per_forwarded(), s.best().cpu_per_forwarded());
        let median = r.median().cpu_per_forwarded() / s.median().cpu_per_forwarded();
        let path =
            r.median().forwarding_cpu_per_forwarded() / s.median().forwarding_cpu_per_forwarded();
        println!(
            "{} K={:<2}: best runs {} {rb:.2} µs, {} {sb:.2} µs per forwarded packet: {} \
             forwards {:.2}x the packets per core (medians {median:.2}x; forwarding path \
             alone, medians {path:.2}x)",
            s.media.name(),
            s.subscribers,
            r.library,
            s.library,
            s.library,
            rb / sb,
        );
    }
}

/// The CPU's model name, for the record.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(media: Media) -> Scenario {
        Scenario {
            media,
            subscribers: 3,
            packets: 120,
            payload: if media == Media::Video { 1_100 } else { 160 },
            packets_per_frame: 6,
            overhead: MeterOverhead::default(),
        }
    }

    fn assert_forwards_everything<L: Library>(lib: &mut L) -> Result<()> {
        for media in [Media::Video, Media::Audio] {
            let s = small(media);
            let f = harness::run(lib, &s)?;
            assert_eq!(f.sfu_received, 120, "{} {}", L::NAME, media.name());
            assert_eq!(f.forwarded, 360, "{} {}", L::NAME, media.name());
            assert_eq!(f.delivered, f.expected, "{} {}", L::NAME, media.name());
        }
        Ok(())
    }

    #[test]
    fn rtc_delivers_every_packet_intact_to_every_subscriber() -> Result<()> {
        assert_forwards_everything(&mut rtc_lib::RtcLib::default())
    }

    #[test]
    fn str0m_delivers_every_packet_intact_to_every_subscriber() -> Result<()> {
        assert_forwards_everything(&mut str0m_lib::Str0mLib)
    }

    #[test]
    fn the_sfu_core_delivers_every_packet_intact_to_every_subscriber() -> Result<()> {
        for media in [Media::Video, Media::Audio] {
            let f = sfu_mode::run(&small(media))?;
            let what = media.name();
            assert!(f.sfu_received >= 120, "{what}: {}", f.sfu_received);
            assert_eq!(f.forwarded, f.sfu_received * 3, "{what}");
            assert_eq!(f.delivered, f.expected, "{what}");
            assert!(
                f.cpu > std::time::Duration::ZERO,
                "{what}: the SFU was timed"
            );
        }
        Ok(())
    }
}
