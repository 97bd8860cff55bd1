// swift-tools-version: 6.2
import PackageDescription

/// Strict compiler settings shared by every Lockstep target (docs/ARCHITECTURE.md, "Conventions").
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "lockstep",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "lockstep", targets: ["lockstep"]),
        .executable(name: "lockstep-confine", targets: ["lockstep-confine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        // HTTPTypes (request/response fields) is imported by the HTTP layer itself, not only
        // through Hummingbird, so it is declared.
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        // The CLI's client of the daemon's API (LockstepClient). NIO and NIOSSL are named because
        // the client imports their types itself (requests, statuses, connection and TLS errors).
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.29.0"),
        // Metrics: recorded through swift-metrics where they happen, exposed by the daemon at
        // `/metrics` in the Prometheus text format.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.0.0"),
        // The review UI's HTML templates (escaped by default).
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.0.0"),
    ],
    targets: [
        // libgit2 from Debian's libgit2-dev, found through pkg-config. Only GitSource imports it.
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CLibgit2",
            pkgConfig: "libgit2",
            providers: [.apt(["libgit2-dev"])]
        ),
        .target(
            name: "GitSource",
            dependencies: [
                "CLibgit2",
                "LockstepCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "LockstepCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // Agent config (trust) and repo config (layout) parsed into validated types (docs/CONTRACT.md §2).
        .target(
            name: "LockstepConfig",
            dependencies: [
                "LockstepCore",
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TerraformRunner",
            dependencies: [
                "CZlib",
                "LockstepCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // The store port and its SQLite implementation (docs/CONTRACT.md §6).
        .target(
            name: "RunStore",
            dependencies: [
                "LockstepCore",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: strict
        ),
        // The gate: wires config, git, terraform and the store around the core's rules.
        // The daemon and the tests drive it the same way.
        .target(
            name: "LockstepGate",
            dependencies: [
                "GitSource",
                "LockstepConfig",
                "LockstepCore",
                "LockstepValidate",
                "RunStore",
                "TerraformRunner",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),
        // `lockstep validate`, the CI step (docs/CONTRACT.md §5): init and validate per target and the
        // parity between a project's environments. A library, so the daemon can call it later.
        .target(
            name: "LockstepValidate",
            dependencies: [
                "LockstepConfig",
                "LockstepCore",
                "TerraformRunner",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The JSON wire types of /api/v1 shared by the server and its clients (docs/CONTRACT.md §5).
        // Foundation and LockstepCore only: no HTTP library, so a client never links the server.
        .target(
            name: "LockstepAPI",
            dependencies: ["LockstepCore"],
            swiftSettings: strict
        ),
        // The JSON API under /api/v1 and health endpoints (docs/CONTRACT.md §5).
        // It talks to the gate only through its APIBackend protocol.
        .target(
            name: "LockstepHTTP",
            dependencies: [
                "LockstepAPI",
                "LockstepCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: strict
        ),
        // A client of the daemon's /api/v1 over AsyncHTTPClient: never follows a redirect, so the
        // bearer token goes only to the configured server. Knows the wire types, never the server.
        .target(
            name: "LockstepClient",
            dependencies: [
                "LockstepAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        // The daemon: the gate as a long-lived service behind the JSON API (docs/CONTRACT.md §5),
        // with systemd readiness.
        .target(
            name: "LockstepDaemon",
            dependencies: [
                "GitSource",
                "LockstepConfig",
                "LockstepCore",
                "LockstepGate",
                "LockstepHTTP",
                "LockstepOutbox",
                "RunStore",
                "TerraformRunner",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The outbox's delivery: run comments and commit statuses on GitHub, GitLab and Gitea,
        // and notifications, from events the store writes with each transition.
        .target(
            name: "LockstepOutbox",
            dependencies: [
                "LockstepConfig",
                "LockstepCore",
                "LockstepGate",
                "RunStore",
                "TerraformRunner",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "LockstepCommands",
            dependencies: [
                "LockstepDaemon",
                "GitSource",
                "LockstepAPI",
                "LockstepClient",
                "LockstepConfig",
                "LockstepCore",
                "LockstepGate",
                "LockstepValidate",
                "RunStore",
                "TerraformRunner",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "lockstep",
            dependencies: ["LockstepCommands", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        // The Landlock system calls, wrapped in plain C functions because syscall() is variadic.
        .target(name: "CLandlock"),
        // The sandbox launcher every terraform process is started through (plan must not read
        // apply credentials, the store or the plugin cache). Small on purpose: no Foundation.
        .executableTarget(
            name: "lockstep-confine",
            dependencies: ["CLandlock"],
            swiftSettings: strict
        ),
        // Benchmarks are a program, never timed unit tests (see BENCHMARKS.md).
        .executableTarget(
            name: "lockstep-bench",
            dependencies: [
                "GitSource",
                "LockstepConfig",
                "LockstepCore",
                "LockstepGate",
                "TerraformRunner",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GitSourceTests",
            dependencies: ["GitSource", "LockstepCore", .product(name: "Crypto", package: "swift-crypto"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(name: "TerraformRunnerTests", dependencies: ["TerraformRunner", "LockstepCore"], swiftSettings: strict),
        .testTarget(name: "LockstepCoreTests", dependencies: ["LockstepCore"], swiftSettings: strict),
        // Name literals (`"prod"` as an EnvironmentName) for test fixtures only; no product has them.
        .target(name: "NameLiterals", dependencies: ["LockstepCore"], path: "Tests/NameLiterals", swiftSettings: strict),
        .testTarget(name: "LockstepConfigTests", dependencies: ["LockstepConfig", "LockstepCore", "NameLiterals"], swiftSettings: strict),
        // `lockstep validate` against delivery checkouts written by the tests, with the pinned terraform.
        .testTarget(
            name: "LockstepValidateTests",
            dependencies: ["LockstepValidate", "LockstepConfig", "LockstepCore", "NameLiterals", "TerraformRunner",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(name: "RunStoreTests", dependencies: ["RunStore", "LockstepCore"], swiftSettings: strict),
        // One canned APIBackend and its fixtures for the HTTP and CLI tests. Test-only:
        // only test targets depend on it, and no product contains it.
        .target(
            name: "APITestSupport",
            dependencies: ["LockstepHTTP", "LockstepCore"],
            path: "Tests/APITestSupport",
            swiftSettings: strict
        ),
        // A local forge (GitHub, GitLab, Gitea endpoints Lockstep calls) and notification receiver.
        .target(
            name: "ForgeMock",
            dependencies: [.product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOFoundationCompat", package: "swift-nio")],
            path: "Tests/ForgeMock",
            swiftSettings: strict
        ),
        // The outbox's sinks and worker against the local forge, with real stores.
        .testTarget(
            name: "LockstepOutboxTests",
            dependencies: ["ForgeMock", "LockstepOutbox", "LockstepConfig", "LockstepCore", "NameLiterals", "RunStore",
                           "TerraformRunner",
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "LockstepHTTPTests",
            dependencies: ["APITestSupport", "LockstepHTTP", "LockstepCore",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "HummingbirdTesting", package: "hummingbird"),
                           .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // The daemon's parts that run without the whole daemon (the systemd notifier).
        .testTarget(
            name: "LockstepDaemonTests",
            dependencies: ["LockstepDaemon", "LockstepConfig", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // The API client commands, run as the built `lockstep` binary against a real APIServer.
        .testTarget(
            name: "LockstepCommandsTests",
            dependencies: ["APITestSupport", "LockstepCommands", "LockstepHTTP", "LockstepCore",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "HummingbirdTesting", package: "hummingbird"),
                           .product(name: "Logging", package: "swift-log")],
            exclude: ["Golden"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "LockstepGateTests",
            dependencies: ["LockstepGate", "LockstepCore", "NameLiterals", "LockstepConfig", "RunStore", "GitSource", "TerraformRunner",
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        // Crash and shutdown tests on the real `lockstep` binary (built first: swift build --build-tests).
        .testTarget(
            name: "DaemonTests",
            dependencies: ["ForgeMock", "LockstepCore", "RunStore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // The sandbox launcher attacked through real processes (built first: swift build --build-tests).
        .testTarget(name: "ConfineTests", swiftSettings: strict),
    ]
)
