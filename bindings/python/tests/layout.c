/* layout.c -- prints the size and field offsets of every public struct in
 * llmroute.h as one JSON object, so the Python binding's test can check that
 * its ctypes structures match the C compiler's layout field for field, and,
 * under "#constants", the value of every integer constant _lib.py copies.
 *
 * Single-threaded; writes to standard output only.
 */
#include <stddef.h>
#include <stdio.h>

#include "llmroute.h"

static int first_struct = 1;

static void begin(const char *name, size_t size)
{
    printf("%s\"%s\": {\"size\": %zu, \"fields\": {", first_struct ? "" : ", ", name, size);
    first_struct = 0;
}

static void field(const char *name, size_t off, int first)
{
    printf("%s\"%s\": %zu", first ? "" : ", ", name, off);
}

/* F(type, member) expands to the member's name and offset; S() prints a struct. */
#define F(type, member) {#member, offsetof(struct type, member)}
#define S(type, ...)                                                                        \
    do {                                                                                    \
        static const struct {                                                               \
            const char *name;                                                               \
            size_t off;                                                                     \
        } fs[] = {__VA_ARGS__};                                                             \
        begin(#type, sizeof(struct type));                                                  \
        for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)                               \
            field(fs[i].name, fs[i].off, i == 0);                                           \
        printf("}}");                                                                       \
    } while (0)

#define C(name)                                                                             \
    do {                                                                                    \
        printf("%s\"%s\": %lld", first ? "" : ", ", #name, (long long)(name));            \
        first = 0;                                                                          \
    } while (0)

int main(void)
{
    printf("{");
    S(lr_error,
      F(lr_error, code),
      F(lr_error, line),
      F(lr_error, message));
    S(lr_model_info,
      F(lr_model_info, name),
      F(lr_model_info, backend),
      F(lr_model_info, base_url),
      F(lr_model_info, api_key_env),
      F(lr_model_info, upstream_model),
      F(lr_model_info, cost_per_input_token),
      F(lr_model_info, cost_per_output_token),
      F(lr_model_info, max_concurrency),
      F(lr_model_info, capacity),
      F(lr_model_info, json));
    S(lr_route_info,
      F(lr_route_info, name),
      F(lr_route_info, strategy),
      F(lr_route_info, models),
      F(lr_route_info, n_models),
      F(lr_route_info, performance_requirement),
      F(lr_route_info, fallbacks),
      F(lr_route_info, n_fallbacks),
      F(lr_route_info, json));
    S(lr_router_defaults,
      F(lr_router_defaults, strategy),
      F(lr_router_defaults, performance_requirement),
      F(lr_router_defaults, n_similar),
      F(lr_router_defaults, predictor),
      F(lr_router_defaults, alpha),
      F(lr_router_defaults, embedding_json),
      F(lr_router_defaults, store_path),
      F(lr_router_defaults, query_text));
    S(lr_outcome,
      F(lr_outcome, model),
      F(lr_outcome, correctness),
      F(lr_outcome, output_tokens));
    S(lr_record,
      F(lr_record, query),
      F(lr_record, input_tokens),
      F(lr_record, task),
      F(lr_record, outcomes),
      F(lr_record, n_outcomes));
    S(lr_store_options,
      F(lr_store_options, embedder),
      F(lr_store_options, dense_dim),
      F(lr_store_options, read_only),
      F(lr_store_options, max_records),
      F(lr_store_options, threads),
      F(lr_store_options, defer_reweigh));
    S(lr_embedding_info,
      F(lr_embedding_info, base_url),
      F(lr_embedding_info, model),
      F(lr_embedding_info, api_key_env),
      F(lr_embedding_info, dimensions),
      F(lr_embedding_info, batch_size),
      F(lr_embedding_info, timeout_ms),
      F(lr_embedding_info, embedder_id),
      F(lr_embedding_info, max_input_chars));
    S(lr_import_options,
      F(lr_import_options, split),
      F(lr_import_options, strict),
      F(lr_import_options, embed),
      F(lr_import_options, embed_arg),
      F(lr_import_options, embed_batch),
      F(lr_import_options, embed_dim),
      F(lr_import_options, name),
      F(lr_import_options, cancel));
    S(lr_import_report,
      F(lr_import_report, read),
      F(lr_import_report, imported),
      F(lr_import_report, skipped_split),
      F(lr_import_report, skipped_unsplit),
      F(lr_import_report, bad),
      F(lr_import_report, first_bad));
    S(lr_router_options,
      F(lr_router_options, strategy),
      F(lr_router_options, store),
      F(lr_router_options, performance_requirement),
      F(lr_router_options, n_similar),
      F(lr_router_options, predictor));
    S(lr_request,
      F(lr_request, models),
      F(lr_request, model_indices),
      F(lr_request, n_models),
      F(lr_request, query),
      F(lr_request, input_tokens),
      F(lr_request, embedding),
      F(lr_request, embedding_dim),
      F(lr_request, performance_requirement));
    S(lr_candidate,
      F(lr_candidate, index),
      F(lr_candidate, predicted_quality),
      F(lr_candidate, predicted_output_tokens),
      F(lr_candidate, estimated_cost));
    S(lr_decision,
      F(lr_decision, index),
      F(lr_decision, predicted_quality),
      F(lr_decision, predicted_output_tokens),
      F(lr_decision, estimated_cost),
      F(lr_decision, input_tokens),
      F(lr_decision, ranking),
      F(lr_decision, ranking_cap),
      F(lr_decision, n_ranked));
    S(lr_batch_options,
      F(lr_batch_options, mode),
      F(lr_batch_options, alpha),
      F(lr_batch_options, budget),
      F(lr_batch_options, capacities));
    S(lr_batch_report,
      F(lr_batch_report, feasible),
      F(lr_batch_report, mean_quality),
      F(lr_batch_report, total_cost),
      F(lr_batch_report, iterations),
      F(lr_batch_report, message));
    /* The integer constants _lib.py copies (error codes, modes, bounds). */
    printf(", \"#constants\": {");
    int first = 1;
    C(LR_OK);
    C(LR_EINVAL);
    C(LR_ENOMEM);
    C(LR_ENOMODEL);
    C(LR_EIO);
    C(LR_EPARSE);
    C(LR_ECONFIG);
    C(LR_EEMPTY);
    C(LR_ESTORE);
    C(LR_EINFEASIBLE);
    C(LR_ESTRATEGY);
    C(LR_ETOOBIG);
    C(LR_EBUSY);
    C(LR_EREPLACED);
    C(LR_ECANCELED);
    C(LR_CORRECTNESS);
    C(LR_INPUT_TOKENS);
    C(LR_OUTPUT_TOKENS);
    C(LR_BATCH_PER_QUERY);
    C(LR_BATCH_QUALITY);
    C(LR_BATCH_BUDGET);
    C(LR_STORE_KEY_TTL_DEFAULT);
    C(LR_STORE_KEY_SAME);
    C(LR_STORE_KEY_DIFFERS);
    C(LR_STORE_MAX_KEY_TTL);
    C(LR_MAX_N_SIMILAR);
    C(LR_BATCH_MAX_BUDGET);
    printf("}}\n");
    return 0;
}
