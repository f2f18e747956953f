"""TF4CTR (Li et al., "TF4CTR: Twin Focus Framework for CTR Prediction via Adaptive Sample
Differentiation", arXiv 2405.03167): SSEM -> simple / complex encoders -> DFM, trained with BCE plus
the Twin Focus loss.

The package: ``layers`` (SSEM and DFM), ``twin_focus`` (the loss), ``model`` (``TF4CTR``, the framework
with MLP encoders) and ``wrappers`` (``TF4CTRWrapper``, the framework on a base model's shallow part and
DNN, Table V, and ``TwinFocusWrapper``, the TF loss alone on a base model, Table II).

Config keys keep the authors' names (``SSM``, ``DFM``, ``easy_hidden_units``, ``hard_hidden_units``,
``alpha``, ``c``, ``gamma``) so their logged runs replay as expids.
"""

from __future__ import annotations

from .. import register_model
from ..base import CTRModel
from ..errors import ModelConfigError
from ..layers import MLP
from .layers import DynamicFusion, make_ssem, ssem_outputs
from .twin_focus import TwinFocusLoss, TwinFocusLossMixin


# ---- TF4CTR ---------------------------------------------------------------------------------------
@register_model
class TF4CTR(TwinFocusLossMixin, CTRModel):
    """TF4CTR (Li et al., arXiv 2405.03167): SSEM + MLP_s/MLP_c + DFM + Twin Focus loss (authors' TF4CTRv2).

    SSM in {share, SER, GM, MoE} (``none`` = share); DFM in {sum, WSF, VF, CF, MoEF} (``none`` = sum).
    MLP_s (``easy_hidden_units``) encodes h_es, MLP_c (``hard_hidden_units``) encodes h_hs; both are
    BN+activation+dropout blocks without output layer, the DFM owns the logit heads z_s, z_c.
    Loss = main loss(sigma(z)) + alpha L_simple(sigma(z_s)) + (1 - alpha) L_complex(sigma(z_c)) + L2
    (``tf_loss: False`` drops the TF term). Where paper and code differ the code is the default:
    SER's easy table has dim d // 2 (``easy_embedding_dim``), VF feeds pi directly as Gumbel logits with
    tau = ``vf_tau`` = 0.8 and draws its Gumbel noise at evaluation too (``vf_eval_noise: False`` makes
    evaluation deterministic, softmax(pi / tau)). The authors' "TF4CTR" v1
    (DualMLP + TF loss, Table II) is ``SSM: share, DFM: WSF``.
    """

    def __init__(
        self,
        feature_map,
        model_id="TF4CTR",
        embedding_dim=16,
        SSM="SER",
        DFM="WSF",
        easy_embedding_dim=None,
        easy_hidden_units=(400,),
        hard_hidden_units=(400, 400, 400),
        hidden_activations="relu",
        net_dropout=0.0,
        batch_norm=True,
        alpha=0.25,
        c=0.8,
        gamma=1,
        tf_loss=True,
        tf_allow_any_c=False,
        vf_tau=0.8,
        vf_eval_noise=True,
        **kwargs,
    ):
        super().__init__(feature_map, model_id=model_id, **kwargs)
        easy_hidden_units, hard_hidden_units = list(easy_hidden_units or []), list(hard_hidden_units or [])
        if not easy_hidden_units or not hard_hidden_units:
            raise ModelConfigError(
                f"{model_id}: easy_hidden_units and hard_hidden_units need at least one layer "
                f"(got {easy_hidden_units} and {hard_hidden_units})"
            )
        block = dict(
            hidden_activations=hidden_activations,
            dropout_rates=net_dropout,
            batch_norm=batch_norm,
            activation_options=kwargs,
        )
        self.ssem = make_ssem(
            SSM,
            self.field_embedding,
            feature_map,
            embedding_dim,
            model=model_id,
            easy_embedding_dim=easy_embedding_dim,
            hidden_activations=hidden_activations,
            net_dropout=net_dropout,
            batch_norm=batch_norm,
        )
        self.mlp_s = MLP(self.ssem.easy_dim, hidden_units=easy_hidden_units, **block)
        self.mlp_c = MLP(self.ssem.hard_dim, hidden_units=hard_hidden_units, **block)
        self.dfm = DynamicFusion(
            DFM,
            easy_hidden_units[-1],
            hard_hidden_units[-1],
            vf_tau=vf_tau,
            vf_eval_noise=vf_eval_noise,
            model=model_id,
        )
        self.twin_focus = TwinFocusLoss(alpha, c, gamma, tf_allow_any_c, source=model_id) if tf_loss else None
        self.finish()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        h_es, h_hs = ssem_outputs(self, X)
        z, z_s, z_c = self.dfm(self.mlp_s(h_es), self.mlp_c(h_hs))
        return self.output(z, logit_simple=z_s, logit_complex=z_c)
