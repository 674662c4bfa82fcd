import Foundation
import Tracing

/// The W3C trace context of the current span, kept with work that runs later (an outbox event), so that the
/// later work joins the trace it was started in. Nothing when tracing is off or no span is current.
public enum TraceContext {
    /// Whether the current request's span is recorded (sampled). Child spans are started only then: a
    /// request that is not sampled costs one span, not one per database call (`otel_sampling_ratio`).
    public static var isRecording: Bool { ServiceContext.current?[Recording.self] ?? false }

    /// `context` marked as recorded: what a recorded server span's children run in.
    public static func recording(_ context: ServiceContext) -> ServiceContext {
        var context = context
        context[Recording.self] = true
        return context
    }

    /// A child span of the current recorded span, or nil when nothing is recorded.
    public static func childSpan(_ name: String, ofKind kind: SpanKind = .internal) -> (any Span)? {
        guard isRecording else { return nil }
        return InstrumentationSystem.tracer.startSpan(name, ofKind: kind)
    }

    enum Recording: ServiceContextKey {
        typealias Value = Bool
    }

    /// The current recorded context as stored text (`{"traceparent":"00-…"}`), or nil.
    public static func current() -> String? {
        guard isRecording, let context = ServiceContext.current else { return nil }
        var carrier: [String: String] = [:]
        InstrumentationSystem.instrument.inject(context, into: &carrier, using: DictionaryInjector())
        guard !carrier.isEmpty else { return nil }
        return (try? String(decoding: JSONEncoder.sortedWithoutEscapingSlashes.encode(carrier), as: UTF8.self))
    }

    /// The context stored by `current()`, as the parent of a new span (nil: start a new trace).
    public static func restore(_ stored: String?) -> ServiceContext? {
        // What `current()` stores is a traceparent and a bounded tracestate: anything larger is not ours.
        guard let stored, stored.utf8.count <= 1024, let carrier = try? JSONDecoder().decode([String: String].self, from: Data(stored.utf8)) else {
            return nil
        }
        var context = ServiceContext.topLevel
        InstrumentationSystem.instrument.extract(carrier, into: &context, using: DictionaryExtractor())
        return context
    }

    struct DictionaryInjector: Injector {
        func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
    }

    struct DictionaryExtractor: Extractor {
        func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
    }
}
